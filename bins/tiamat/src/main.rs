use std::process::ExitCode;
use std::time::Duration;

use actix_web::middleware::from_fn;
use actix_web::{App as HttpApp, HttpServer};
use clap::{Parser, Subcommand};
use tiamat::config::LogFormat;
use tiamat::{Config, build};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "tiamat",
    version,
    about = "Operations API for solar mini-grids"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (applies migrations first when TIAMAT_AUTO_MIGRATE=true).
    Serve,
    /// Apply pending database migrations.
    Migrate,
    /// Validate configuration and exit.
    CheckConfig,
    /// Create the platform organization and a SUPERADMIN (idempotent) and print a new API key as JSON.
    Bootstrap {
        #[arg(long)]
        org_name: String,
        #[arg(long, default_value = "admin@tiamat.local")]
        email: String,
        /// Also create a "Demo Grid" in the organization.
        #[arg(long)]
        demo_grid: bool,
    },
    /// Ledger checks.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
    /// Development aid: print an HS256 access token for a login (the `auth_user_id` of a member,
    /// agent or customer), signed with TIAMAT_JWT_SECRET, as Supabase would issue it.
    Token {
        #[arg(long)]
        auth_user_id: uuid::Uuid,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: i64,
    },
}

#[derive(Subcommand)]
enum LedgerCommand {
    /// Prove that every wallet's balance equals the sum of its entries and every transaction
    /// balances per currency; exits non-zero and lists the offenders otherwise.
    Verify,
}

fn init_tracing(config: &Config) {
    let filter = EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.init(),
    }
}

fn main() -> ExitCode {
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("tiamat: configuration is invalid:");
            for e in errors {
                eprintln!("  - {e}");
            }
            return ExitCode::from(2);
        }
    };
    if let Command::Token { auth_user_id, ttl } = cli.command {
        return match tiamat::dev_token(&config, auth_user_id, ttl) {
            Ok(t) => {
                println!("{t}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("tiamat: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    if let Command::CheckConfig = cli.command {
        return match build_runtime()
            .and_then(|rt| rt.block_on(async { build(&config).map(|_| ()) }))
        {
            Ok(()) => {
                println!("configuration is valid");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("tiamat: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    init_tracing(&config);
    let result = build_runtime().and_then(|rt| rt.block_on(run(cli.command, config)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tiamat: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn build_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    let app = build(&config)?;
    match command {
        Command::Migrate => {
            let applied = app.db.migrate().await?;
            tracing::info!(count = applied.len(), ?applied, "migrations applied");
            Ok(())
        }
        Command::Bootstrap {
            org_name,
            email,
            demo_grid,
        } => {
            app.db.migrate().await?;
            let out = tiamat::bootstrap::run(&app, &org_name, &email, demo_grid)
                .await
                .map_err(|e| anyhow::anyhow!("bootstrap failed: {e}"))?;
            println!("{}", serde_json::to_string(&out)?);
            Ok(())
        }
        Command::Ledger {
            command: LedgerCommand::Verify,
        } => {
            let sound = tiamat::ledger_cli::verify(&app.db, &mut std::io::stdout()).await?;
            if sound {
                Ok(())
            } else {
                Err(anyhow::anyhow!(
                    "the ledger is not sound (offences listed above)"
                ))
            }
        }
        Command::Serve => serve(app, &config).await,
        Command::CheckConfig | Command::Token { .. } => Ok(()),
    }
}

async fn serve(app: tiamat::App, config: &Config) -> anyhow::Result<()> {
    if config.auto_migrate {
        let applied = app.db.migrate().await?;
        tracing::info!(count = applied.len(), "migrations applied at start");
    }
    api::metrics::handle();
    let _jwks = app.spawn_jwks_refresh(Duration::from_secs(300));
    // Meter commands go out through the network server when one is configured.
    let delivery = app.delivery(config.delivery);
    let _delivery = match &delivery {
        Some(service) => tiamat::delivery_worker::spawn(
            service.clone(),
            tiamat::delivery_worker::Polling::default(),
            app.state.wakes.delivery.clone(),
        ),
        None => {
            tracing::warn!("no network server is configured: meter commands stay queued");
            Vec::new()
        }
    };
    let _inbox = tiamat::inbox_worker::spawn(&app, delivery, Duration::from_millis(250));
    // Suspension recovery and drift correction; cheap when nothing drifted.
    let _reconciler = tiamat::delivery_worker::spawn_reconciler(
        app.reconciler(meters::ReconcilePolicy::default()),
        Duration::from_secs(15),
    );
    let _commissioning = tiamat::commissioning_worker::spawn(&app);
    // Abandoned hosted payments become TIMED_OUT (a late verification may still complete them).
    let _payment_sweeper = tiamat::payment_worker::spawn_sweeper(
        app.state.checkout.clone(),
        config.payments.abandoned_after,
        Duration::from_secs(60),
    );
    // Payout transfers without an answer (or a lost webhook) are settled from a read-back; one
    // the provider never made is given back an hour after it started.
    let _payout_read_back = tiamat::payment_worker::spawn_payout_read_back(
        app.state.services.payouts.clone(),
        Duration::from_secs(3600),
        Duration::from_secs(60),
    );
    // Completed meter top-ups become TOP_UP interactions; their outcomes reach the purchases.
    let _purchases = tiamat::purchase_worker::spawn(&app);
    // Reversed provider payments are refunded at the provider (only with a provider configured).
    let _refunds = app
        .state
        .payments_gateway
        .is_some()
        .then(|| tiamat::refund_worker::spawn(&app));
    // Directive batch rules fire in their grid's time (every instance; fires are unique).
    let _batches = tiamat::batch_scheduler::spawn(app.state.services.batches.clone());
    // Live events from every instance, for this instance's WebSocket clients.
    let _live = app
        .spawn_live_listener(secrecy::ExposeSecret::expose_secret(&config.database_url).to_owned());
    let state = app.state.clone();
    tracing::info!(listen = %config.listen, "serving; docs at http://{}/docs/", config.listen);
    HttpServer::new(move || {
        HttpApp::new()
            .wrap(from_fn(api::middleware::request_context))
            .configure(api::configure(state.clone()))
    })
    // Answers go out at once: with Nagle's algorithm on, an answer written in two parts would wait
    // for the client's delayed ACK of the first (up to 40 ms on Linux).
    .tcp_nodelay(true)
    .bind(config.listen)?
    .shutdown_timeout(20)
    .run()
    .await?;
    Ok(())
}
