use std::sync::Arc;

use async_trait::async_trait;
use grids::GridService;
use orgs::{
    AgentService, ApiKeyService, AuditService, Authenticator, CustomerService, MemberService,
    OrganizationService,
};
use serde::Serialize;

/// The domain services the routes call.
#[derive(Clone)]
pub struct Services {
    pub organizations: OrganizationService,
    pub members: MemberService,
    pub agents: AgentService,
    pub customers: CustomerService,
    pub grids: GridService,
    pub api_keys: ApiKeyService,
    pub audit: AuditService,
    pub gateways: grids::gateways::GatewayService,
    pub mppts: grids::site::MpptService,
    pub poles: grids::site::PoleService,
    pub connections: grids::connections::ConnectionService,
    pub meters: grids::meters::MeterService,
    pub grid_state: grids::state::GridStateService,
    pub commands: meters::CommandService,
    pub installs: meters::InstallService,
    pub batches: meters::batches::BatchService,
    /// Wallets, statements, transfers, refunds, orders and revenue (the ledger).
    pub money: payments::MoneyService,
    /// Meter credit purchases (completed top-ups → TOP_UP interactions).
    pub purchases: payments::purchase::PurchaseService,
    /// Payouts to grid owners.
    pub payouts: payments::payouts::PayoutService,
    /// Refunds owed at payment providers for reversed provider payments.
    pub provider_refunds: payments::refunds::ProviderRefundService,
}

/// One dependency's state in `/health/ready`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HealthReport {
    pub name: &'static str,
    pub ok: bool,
    /// Degraded dependencies do not fail readiness but are shown (e.g. a stale JWKS cache).
    pub critical: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What the composition root knows how to check: the database, migrations, key caches.
#[async_trait]
pub trait HealthCheck: Send + Sync {
    async fn check(&self) -> Vec<HealthReport>;
    /// Called on each `/metrics` scrape to refresh gauges (pool use...).
    fn refresh_gauges(&self) {}
}

#[derive(Clone)]
pub struct AppState {
    pub services: Services,
    pub auth: Authenticator,
    pub health: Arc<dyn HealthCheck>,
    /// Live-event fan-out to this instance's WebSocket clients.
    pub hub: crate::ws::Hub,
    /// Where inbound integration events are stored before processing.
    pub inbox: Arc<dyn grids::telemetry::Inbox>,
    /// The shared secret ChirpStack sends with its webhooks; `None` disables the endpoint.
    pub chirpstack_webhook_secret: Option<Arc<str>>,
    /// First answers of requests sent with an `Idempotency-Key`.
    pub idempotency: Arc<dyn orgs::IdempotencyStore>,
    /// The LoRaWAN network server's device registry (installs register devices there); `None`
    /// when no network server is configured.
    pub devices: Option<Arc<dyn meters::DeviceRegistry>>,
    /// The LoRaWAN network server's downlink queue; `None` when none is configured.
    pub downlinks: Option<Arc<dyn meters::DownlinkQueue>>,
    /// Delivery status of interactions.
    pub deliveries: meters::DeliveryStatusService,
    /// Wakes this instance's background workers early (new work was just committed).
    pub wakes: Wakes,
    /// Grids' reconciliation modes.
    pub reconciliation: meters::ReconciliationSettings,
    /// Hosted payments (Flutterwave): start, check, cancel, verify; settled through the ledger.
    pub checkout: payments::checkout::CheckoutService,
    /// Organizations' own payment-provider accounts (encrypted at rest).
    pub payment_credentials: payments::CredentialService,
    /// The platform Flutterwave account's webhook secret hash; `None` disables the platform
    /// webhook (503).
    pub flutterwave_webhook_hash: Option<Arc<secrecy::SecretString>>,
    /// The payment provider (Flutterwave); `None` when no Flutterwave account is configured.
    pub payments_gateway: Option<Arc<dyn payments::PaymentGateway>>,
}

/// Wake-ups for background workers, so work committed now is picked up now rather than at the
/// next poll.
#[derive(Clone, Default)]
pub struct Wakes {
    /// An inbound integration event was stored.
    pub inbox: Arc<tokio::sync::Notify>,
    /// An interaction was created or changed (on any instance: fed by the live-event listener).
    pub delivery: Arc<tokio::sync::Notify>,
}
