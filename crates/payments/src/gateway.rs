//! Payment providers ([`PaymentGateway`], implemented by the `flutterwave` crate) and the
//! settlement port ([`PaymentSettlement`], implemented by the store) through which a verified
//! external payment is credited to its order exactly once.

use async_trait::async_trait;
use kernel::{Currency, DomainError, OrderId, OrganizationId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::vocab::Money;

/// A hosted payment page to open for an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostedPaymentRequest {
    /// Our unguessable order reference (the provider's `tx_ref`).
    pub reference: String,
    pub amount: Money,
    /// Where the provider sends the payer afterwards.
    pub redirect_url: String,
    pub customer_email: Option<String>,
    pub customer_name: Option<String>,
    pub customer_phone: Option<String>,
    pub title: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct HostedPayment {
    /// The page to send the payer to.
    pub link: String,
}

/// The provider's word on a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProviderStatus {
    Successful,
    Pending,
    Failed,
}

/// A payment as the provider's verification API reports it (never trusted from a webhook body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPayment {
    /// The provider's transaction id.
    pub provider_id: String,
    /// The `tx_ref` it was made for.
    pub reference: String,
    pub status: ProviderStatus,
    /// What was charged (amount and currency), to be compared with the order.
    pub charged: Money,
    pub payment_type: Option<String>,
}

/// A payout transfer to a bank account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRequest {
    /// Our unique reference (idempotency at the provider).
    pub reference: String,
    pub amount: Money,
    pub bank_code: String,
    pub account_number: String,
    pub narration: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferResult {
    pub provider_id: String,
    pub status: ProviderStatus,
}

/// A transfer as the provider's API reports it (a webhook only names it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedTransfer {
    pub provider_id: String,
    /// Our reference it was made with.
    pub reference: String,
    pub status: ProviderStatus,
    /// The provider's reason when it failed.
    pub failure_reason: Option<String>,
}

/// A refund at the provider, as it answered (on sending it or reading it back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRefund {
    /// The provider's id of the refund (read it back with [`PaymentGateway::refund_status`]).
    pub id: String,
    /// `Successful` once the money went back to the payer.
    pub status: ProviderStatus,
    /// What the provider says was refunded, when it says it in a currency we know.
    pub amount: Option<Money>,
    /// The provider's reason when it failed.
    pub failure_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// Timeouts, 5xx, rate limits: try again later. For a call that changes something (a
    /// transfer, a refund) it may have been done anyway: read back before sending again.
    #[error("payment provider unavailable: {0}")]
    Unavailable(String),
    /// The request never reached the provider (no connection could be made, no account is
    /// configured) or the provider turned it away unprocessed (rate limit): nothing was done,
    /// so a transfer or refund may be sent again without reading it back first.
    #[error("payment provider not reached: {0}")]
    NotSent(String),
    /// The provider refused (bad credentials, invalid request, unknown transaction).
    #[error("payment provider refused: {0}")]
    Refused(String),
    /// No such payment at the provider.
    #[error("payment not found at the provider")]
    NotFound,
}

impl From<GatewayError> for DomainError {
    fn from(e: GatewayError) -> Self {
        match e {
            GatewayError::Unavailable(m) | GatewayError::NotSent(m) => DomainError::Unavailable(m),
            GatewayError::Refused(m) => DomainError::Conflict(m),
            GatewayError::NotFound => DomainError::NotFound("payment"),
        }
    }
}

/// A payment provider, for one organization's credentials (or the platform's).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait PaymentGateway: Send + Sync {
    async fn initialise(
        &self,
        org: Option<OrganizationId>,
        request: HostedPaymentRequest,
    ) -> Result<HostedPayment, GatewayError>;
    async fn verify_by_id(
        &self,
        org: Option<OrganizationId>,
        provider_id: &str,
    ) -> Result<VerifiedPayment, GatewayError>;
    async fn verify_by_reference(
        &self,
        org: Option<OrganizationId>,
        reference: &str,
    ) -> Result<VerifiedPayment, GatewayError>;
    async fn transfer(
        &self,
        org: Option<OrganizationId>,
        request: TransferRequest,
    ) -> Result<TransferResult, GatewayError>;
    /// Reads a transfer by the provider's id (to confirm what a webhook announced).
    async fn verify_transfer(
        &self,
        org: Option<OrganizationId>,
        provider_id: &str,
    ) -> Result<VerifiedTransfer, GatewayError>;
    /// Reads a transfer by our reference: how a transfer whose sending had no answer is found.
    /// `Ok(None)` only when the provider holds no transfer with that reference; any doubt is an
    /// error, since "none" lets the payout's money go back to its organization.
    async fn transfer_by_reference(
        &self,
        org: Option<OrganizationId>,
        reference: &str,
    ) -> Result<Option<VerifiedTransfer>, GatewayError>;
    /// Asks the provider to give `amount` of the payment `transaction_id` back to the payer.
    /// `Unavailable` may mean it was done anyway (a timeout): read back before sending again.
    async fn refund(
        &self,
        org: Option<OrganizationId>,
        transaction_id: &str,
        amount: Money,
    ) -> Result<ProviderRefund, GatewayError>;
    /// Reads a refund back by the provider's refund id.
    async fn refund_status(
        &self,
        org: Option<OrganizationId>,
        refund_id: &str,
        currency: Currency,
    ) -> Result<ProviderRefund, GatewayError>;
    /// The refunds the provider holds for the payment `transaction_id` (empty when none): how a
    /// refund whose sending had no answer is found before any resend.
    async fn refunds_of(
        &self,
        org: Option<OrganizationId>,
        transaction_id: &str,
        currency: Currency,
    ) -> Result<Vec<ProviderRefund>, GatewayError>;
}

/// What settling a verified payment did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// Credited now (this call won).
    Credited(OrderId),
    /// It had been credited before: nothing changed.
    AlreadyCredited(OrderId),
    /// The payment does not match the order (amount, currency or reference): the order FAILED.
    Mismatch(OrderId),
    /// The provider says it failed: the order FAILED.
    Failed(OrderId),
    /// Still pending at the provider: nothing changed.
    StillPending(OrderId),
}

/// Credits verified external payments to their orders. Implementations compare-and-set the
/// order's status (INITIALISED/PENDING/TIMED_OUT → COMPLETED) and post the ledger entries in the
/// same transaction, so however many webhooks and verifications race, one credits.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait PaymentSettlement: Send + Sync {
    async fn settle(&self, payment: VerifiedPayment) -> Result<Settlement, DomainError>;
}
