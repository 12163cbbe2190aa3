//! `meter-sim`: a simulated ChirpStack gRPC API and CALIN meters that answer through the
//! ChirpStack HTTP-integration webhook. See the library documentation.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use meter_sim::{Faults, SimConfig, Webhook};
use url::Url;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Simulated ChirpStack (DeviceService gRPC) and CALIN LoRaWAN meters"
)]
struct Cli {
    /// Address for the gRPC DeviceService.
    #[arg(long, env = "METER_SIM_GRPC_LISTEN", default_value = "127.0.0.1:8091")]
    grpc_listen: SocketAddr,
    /// Where events are posted (`?event=…` is appended), e.g.
    /// http://127.0.0.1:8080/api/v1/integrations/chirpstack/events. Unset: events are not posted.
    #[arg(long, env = "METER_SIM_WEBHOOK_URL")]
    webhook_url: Option<Url>,
    /// Sent as `X-Webhook-Token` with every event.
    #[arg(long, env = "METER_SIM_WEBHOOK_SECRET", hide_env_values = true)]
    webhook_secret: Option<String>,
    /// When set, gRPC calls must carry `authorization: Bearer <token>`.
    #[arg(long, env = "METER_SIM_API_TOKEN", hide_env_values = true)]
    api_token: Option<String>,
    /// From enqueue to the meter's answer, in milliseconds.
    #[arg(long, env = "METER_SIM_LATENCY_MS", default_value_t = 500)]
    latency_ms: u64,
    /// Probability that a downlink is transmitted and then lost.
    #[arg(long, env = "METER_SIM_LOSS", default_value_t = 0.0)]
    loss: f64,
    /// Probability that the meter refuses a command.
    #[arg(long, env = "METER_SIM_NAK", default_value_t = 0.0)]
    nak: f64,
    /// Probability that a command is executed but its acknowledgement and reply are lost.
    #[arg(long, env = "METER_SIM_GHOST", default_value_t = 0.0)]
    ghost: f64,
    /// Probability that the device does not acknowledge (not executed).
    #[arg(long, env = "METER_SIM_ACK_FALSE", default_value_t = 0.0)]
    ack_false: f64,
    /// Seed for the fault draws (unset: random).
    #[arg(long, env = "METER_SIM_SEED")]
    seed: Option<u64>,
    /// Every meter sends its hourly report this often (0: never).
    #[arg(long, env = "METER_SIM_REPORT_INTERVAL_SECS", default_value_t = 0)]
    report_interval_secs: u64,
    /// Fail enqueues for unregistered devices, like ChirpStack, instead of registering them.
    #[arg(long, env = "METER_SIM_NO_AUTO_REGISTER")]
    no_auto_register: bool,
    /// The gateway every meter is heard through (16 hex digits).
    #[arg(long, env = "METER_SIM_GATEWAY_ID", default_value = "0016c001f153a14c")]
    gateway_id: String,
    /// Tracing filter.
    #[arg(long, env = "METER_SIM_LOG", default_value = "info")]
    log: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cli.log))
        .init();
    let config = SimConfig {
        grpc_listen: cli.grpc_listen,
        webhook: cli.webhook_url.map(|url| Webhook {
            url,
            secret: cli.webhook_secret,
        }),
        latency: Duration::from_millis(cli.latency_ms),
        faults: Faults {
            loss: cli.loss,
            nak: cli.nak,
            ghost: cli.ghost,
            ack_false: cli.ack_false,
        },
        seed: cli.seed,
        report_interval: (cli.report_interval_secs > 0)
            .then(|| Duration::from_secs(cli.report_interval_secs)),
        auto_register: !cli.no_auto_register,
        api_token: cli.api_token,
        gateway_id: cli.gateway_id,
    };
    let sim = meter_sim::start(config).await?;
    println!("meter-sim: ChirpStack DeviceService on {}", sim.grpc_url());
    shutdown_signal().await;
    let c = sim.counters();
    tracing::info!(
        received = c.downlinks_received,
        executed = c.executed,
        replies = c.replies_sent,
        webhook_failures = c.webhook_failures,
        "meter-sim stopping"
    );
    sim.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
