use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use anyhow::Context;
use api::{AppState, HealthCheck, HealthReport, Services};
use async_trait::async_trait;
use grids::GridService;
use orgs::{
    AgentService, ApiKeyService, AuditService, Authenticator, CustomerService, IdentityProvider,
    LocalIdentityProvider, MemberService, OrganizationService,
};
use secrecy::ExposeSecret;
use store::Db;
use supabase::{GoTrueAdmin, JwtSettings, JwtVerifier};

use crate::config::Config;

/// Everything a running instance holds.
#[derive(Clone)]
pub struct App {
    pub db: Db,
    pub jwt: JwtVerifier,
    pub idp: Arc<dyn IdentityProvider>,
    pub state: AppState,
    /// The live-event listener: not started, listening, or reconnecting (shown in readiness).
    live: Arc<AtomicU8>,
}

const LIVE_NOT_STARTED: u8 = 0;
const LIVE_UP: u8 = 1;
const LIVE_DOWN: u8 = 2;

struct Health {
    db: Db,
    jwt: JwtVerifier,
    live: Arc<AtomicU8>,
}

#[async_trait]
impl HealthCheck for Health {
    async fn check(&self) -> Vec<HealthReport> {
        let database = match self.db.ready().await {
            Ok(true) => HealthReport {
                name: "database",
                ok: true,
                critical: true,
                detail: None,
            },
            Ok(false) => HealthReport {
                name: "database",
                ok: false,
                critical: true,
                detail: Some("migrations pending: run `tiamat migrate`".into()),
            },
            Err(e) => HealthReport {
                name: "database",
                ok: false,
                critical: true,
                detail: Some(e.to_string()),
            },
        };
        let jwks = self.jwt.jwks_health();
        let jwks = HealthReport {
            name: "jwks",
            ok: !jwks.configured || jwks.last_refresh_ok,
            critical: false,
            detail: jwks
                .last_error
                .or_else(|| jwks.configured.then(|| format!("{} keys", jwks.keys))),
        };
        // Without the listener, WebSocket clients of this instance miss other instances' changes
        // until it reconnects; the REST API is unaffected, so this does not fail readiness.
        let live = match self.live.load(Ordering::Relaxed) {
            LIVE_UP => HealthReport {
                name: "live_events",
                ok: true,
                critical: false,
                detail: None,
            },
            LIVE_DOWN => HealthReport {
                name: "live_events",
                ok: false,
                critical: false,
                detail: Some(
                    "listener reconnecting; WebSocket clients will be told to resync".into(),
                ),
            },
            _ => HealthReport {
                name: "live_events",
                ok: false,
                critical: false,
                detail: Some("listener not started".into()),
            },
        };
        vec![database, jwks, live]
    }

    fn refresh_gauges(&self) {
        let (max, size, available) = self.db.pool_status();
        metrics::gauge!("tiamat_db_pool_connections", "state" => "max").set(max as f64);
        metrics::gauge!("tiamat_db_pool_connections", "state" => "open").set(size as f64);
        metrics::gauge!("tiamat_db_pool_connections", "state" => "idle").set(available as f64);
    }
}

/// Builds adapters and services from configuration. Fails on a misconfigured token issuer.
pub fn build(config: &Config) -> anyhow::Result<App> {
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .build()
        .context("building the HTTP client")?;
    let db = Db::connect(config.database_url.expose_secret(), config.pool_size)
        .context("database pool")?;
    let jwt = JwtVerifier::new(
        JwtSettings {
            hs256_secret: config.jwt_secret.clone(),
            jwks_url: config.jwks_url.clone(),
            audience: config.jwt_audience.clone(),
            issuer: config.jwt_issuer.clone(),
            jwks_ttl: config.jwks_ttl,
            ..JwtSettings::default()
        },
        http.clone(),
    )
    .context("token verification is misconfigured")?;
    let idp: Arc<dyn IdentityProvider> = match &config.supabase {
        Some(s) => Arc::new(GoTrueAdmin::new(
            s.url.clone(),
            s.service_role_key.clone(),
            http.clone(),
        )),
        None => Arc::new(LocalIdentityProvider),
    };
    let repo = Arc::new(db.clone());
    // Payments (Flutterwave): the platform account and organizations' own accounts, sealed in
    // the database under TIAMAT_PAYMENT_CREDENTIALS_KEY.
    let credentials_key = config.payments.credentials_key_bytes();
    let payment_credentials = Arc::new(store::payment_credentials::PaymentCredentials::new(
        db.clone(),
        credentials_key.as_ref(),
    ));
    let payments_gateway: Option<Arc<dyn payments::PaymentGateway>> =
        (config.payments.flutterwave.is_some() || credentials_key.is_some()).then(|| {
            let platform =
                config
                    .payments
                    .flutterwave
                    .as_ref()
                    .map(|f| payments::ProviderCredentials {
                        public_key: None,
                        secret_key: f.secret_key.clone(),
                        webhook_hash: Some(f.webhook_hash.clone()),
                    });
            Arc::new(
                flutterwave::FlutterwaveGateway::new(
                    config.payments.flutterwave_base_url.clone(),
                    platform,
                    http.clone(),
                )
                .with_organization_credentials(payment_credentials.clone()),
            ) as Arc<dyn payments::PaymentGateway>
        });
    let checkout = payments::checkout::CheckoutService::new(
        payments_gateway.clone(),
        repo.clone(),
        repo.clone(),
        repo.clone(),
        repo.clone(),
    );
    let inbox: Arc<dyn grids::telemetry::Inbox> = Arc::new(db.clone());
    let idempotency: Arc<dyn orgs::IdempotencyStore> = Arc::new(db.clone());
    let keys = orgs::KeyCache::new(config.api_key_cache_ttl);
    let commands = meters::CommandService::new(
        repo.clone(),
        repo.clone(),
        repo.clone(),
        repo.clone(),
        repo.clone(),
        Arc::new(meters::SystemClock),
    )
    .with_records(repo.clone());
    let commands = match &config.sts_generator_url {
        Some(url) => commands.with_tokens(
            Arc::new(sts::StsGenerator::new(
                url.clone(),
                config.sts_generator_api_key.clone(),
                http.clone(),
            )),
            repo.clone(),
        ),
        None => commands,
    };
    let services = Services {
        organizations: OrganizationService::new(repo.clone()).with_key_cache(keys.clone()),
        members: MemberService::new(repo.clone(), idp.clone()),
        agents: AgentService::new(repo.clone(), idp.clone()),
        customers: CustomerService::new(repo.clone(), idp.clone()),
        grids: GridService::new(repo.clone()),
        api_keys: ApiKeyService::new(repo.clone()).with_key_cache(keys.clone()),
        audit: AuditService::new(repo.clone()),
        gateways: grids::gateways::GatewayService::new(repo.clone()),
        mppts: grids::site::MpptService::new(repo.clone()),
        poles: grids::site::PoleService::new(repo.clone()),
        connections: grids::connections::ConnectionService::new(repo.clone()),
        meters: grids::meters::MeterService::new(repo.clone()),
        grid_state: grids::state::GridStateService::new(repo.clone()),
        commands: commands.clone(),
        // Completed top-ups become TOP_UPs through the normal intake (purchase_worker).
        purchases: payments::purchase::PurchaseService::new(
            repo.clone(),
            Arc::new(commands.clone()),
        ),
        // Paid by provider transfers when a payment provider is configured.
        payouts: {
            let payouts = payments::payouts::PayoutService::new(repo.clone());
            match &payments_gateway {
                Some(gateway) => payouts.with_gateway(gateway.clone()),
                None => payouts,
            }
        },
        installs: meters::InstallService::new(
            repo.clone(),
            commands,
            repo.clone(),
            repo.clone(),
            repo.clone(),
            Arc::new(meters::SystemClock),
        ),
        money: payments::MoneyService::new(repo.clone()),
        // Sent by the refund worker when a payment provider is configured.
        provider_refunds: {
            let refunds = payments::refunds::ProviderRefundService::new(
                repo.clone(),
                payments::MoneyService::new(repo.clone()),
            );
            match &payments_gateway {
                Some(gateway) => refunds.with_gateway(gateway.clone()),
                None => refunds,
            }
        },
        batches: {
            let batches = meters::batches::BatchService::new(
                repo.clone(),
                repo.clone(),
                Arc::new(meters::SystemClock),
            );
            // FS rules on single-meter grids send SET_POWER_LIMIT, an STS token.
            match &config.sts_generator_url {
                Some(url) => batches.with_tokens(
                    Arc::new(sts::StsGenerator::new(
                        url.clone(),
                        config.sts_generator_api_key.clone(),
                        http.clone(),
                    )),
                    repo.clone(),
                ),
                None => batches,
            }
        },
    };

    let auth = Authenticator::new(Arc::new(jwt.clone()), repo).with_key_cache(keys);
    // ChirpStack's gRPC API (or meter-sim speaking it); the channel connects on first use.
    let network = config
        .chirpstack_api
        .clone()
        .map(chirpstack::ChirpstackDeviceApi::new)
        .transpose()
        .context("ChirpStack API client")?
        .map(Arc::new);
    let deliveries = meters::DeliveryStatusService::new(Arc::new(db.clone()));
    let reconciliation = meters::ReconciliationSettings::new(Arc::new(db.clone()));
    let live = Arc::new(AtomicU8::new(LIVE_NOT_STARTED));
    let health = Arc::new(Health {
        db: db.clone(),
        jwt: jwt.clone(),
        live: live.clone(),
    });
    Ok(App {
        db,
        jwt,
        idp,
        live,
        state: AppState {
            services,
            auth,
            health,
            hub: api::ws::Hub::default(),
            inbox,
            idempotency,
            deliveries,
            wakes: api::state::Wakes::default(),
            reconciliation,
            devices: network
                .clone()
                .map(|n| n as Arc<dyn meters::DeviceRegistry>),
            downlinks: network.map(|n| n as Arc<dyn meters::DownlinkQueue>),
            chirpstack_webhook_secret: config
                .chirpstack_webhook_secret
                .as_ref()
                .map(|s| Arc::from(s.expose_secret())),
            checkout,
            payment_credentials: payments::CredentialService::new(payment_credentials),
            flutterwave_webhook_hash: config
                .payments
                .flutterwave
                .as_ref()
                .map(|f| Arc::new(f.webhook_hash.clone())),
            payments_gateway,
        },
    })
}

impl App {
    /// Feeds this instance's WebSocket hub from PostgreSQL `LISTEN`: every committed change, made
    /// by any instance, reaches the clients connected here. The listener reconnects by itself
    /// (logged and counted); after a reconnect every client is told to resync, since events sent
    /// in the gap are lost. Dropping the handle stops it.
    pub fn spawn_live_listener(&self, database_url: String) -> store::listener::ListenerHandle {
        let hub = self.state.hub.clone();
        let keys = self.state.auth.key_cache().clone();
        let delivery = self.state.wakes.delivery.clone();
        let handle = store::listener::spawn(
            database_url,
            move |grid, payload| {
                // Interaction changes committed anywhere may be work for this delivery worker.
                if payload.contains("\"meter_interaction\"") {
                    delivery.notify_one();
                }
                hub.dispatch(grid, payload);
            },
            move |prefix| match prefix {
                "*" => keys.clear(),
                prefix => keys.forget(prefix),
            },
        );
        let hub = self.state.hub.clone();
        let keys = self.state.auth.key_cache().clone();
        let mut status = handle.status();
        let live = self.live.clone();
        tokio::spawn(async move {
            // The listener may have connected before this task first looks.
            let mut was_up = *status.borrow_and_update();
            if was_up {
                live.store(LIVE_UP, Ordering::Relaxed);
            }
            while status.changed().await.is_ok() {
                let up = *status.borrow_and_update();
                live.store(if up { LIVE_UP } else { LIVE_DOWN }, Ordering::Relaxed);
                if up && was_up {
                    hub.broadcast(std::sync::Arc::from(api::ws::session::RESYNC));
                    // Revocations may have been missed while disconnected.
                    keys.clear();
                }
                was_up |= up;
            }
        });
        handle
    }

    /// Keeps the JWKS cache warm. Failures keep the last good keys; they are logged and counted
    /// by the verifier, and shown in `/health/ready`.
    pub fn spawn_jwks_refresh(&self, every: Duration) -> Option<tokio::task::JoinHandle<()>> {
        self.jwt.jwks_health().configured.then(|| {
            let jwt = self.jwt.clone();
            tokio::spawn(async move {
                loop {
                    if let Err(e) = jwt.refresh_jwks().await {
                        tracing::warn!(error = %e, "JWKS refresh failed; keeping the last good keys");
                    }
                    tokio::time::sleep(every).await;
                }
            })
        })
    }
}

impl App {
    /// The delivery pipeline over the configured network server (CALIN LoRaWAN frames); `None`
    /// when no network server is configured.
    pub fn delivery(&self, timings: meters::DeliveryTimings) -> Option<meters::DeliveryService> {
        let queue = self.state.downlinks.clone()?;
        let jitter: Arc<std::sync::Mutex<dyn meters::Jitter + Send>> =
            Arc::new(std::sync::Mutex::new(rand::random::<f64>));
        Some(
            meters::DeliveryService::new(
                Arc::new(self.db.clone()),
                Arc::new(self.db.clone()),
                queue,
                Arc::new(lorawan::CalinLorawan),
                Arc::new(meters::SystemClock),
                jitter,
            )
            .with_timings(timings),
        )
    }
}

impl App {
    /// The reconciliation loop over this instance's services.
    pub fn reconciler(&self, policy: meters::ReconcilePolicy) -> meters::Reconciler {
        let db = Arc::new(self.db.clone());
        meters::Reconciler::new(
            db.clone(),
            db.clone(),
            db.clone(),
            db.clone(),
            db,
            self.state.services.commands.clone(),
            Arc::new(meters::SystemClock),
        )
        .with_policy(policy)
    }
}
