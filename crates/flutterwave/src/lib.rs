//! Flutterwave v3 adapter: [`FlutterwaveGateway`] is the [`PaymentGateway`] (hosted payments,
//! verification by id and by reference, payout transfers and reading them back by id or by our
//! reference, refunds of payments and reading them back); [`webhook`] authenticates and parses
//! inbound webhooks; [`amount`] converts between minor units and the provider's decimals exactly.
//!
//! Credentials (predecessor ADR-003): each call names the organization whose account it is for;
//! an organization with its own keys (from a [`CredentialSource`]) uses them, every other call
//! uses the platform account. No configured account for a call → `NotSent`.
//!
//! Error mapping: no connection made, credentials unreadable, 429 → `NotSent` (nothing reached or
//! was done by the provider); timeouts, other transport failures and 5xx → `Unavailable` (the
//! outcome is unknown); a "no transaction found" answer or 404 → `NotFound`; other 4xx →
//! `Refused`. The secret key never
//! reaches a log, an error message or a `Debug` output.

pub mod amount;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kernel::{Currency, MinorUnits, OrganizationId};
use payments::{
    CredentialSource, GatewayError, HostedPayment, HostedPaymentRequest, Money, PaymentGateway,
    ProviderCredentials, ProviderRefund, ProviderStatus, TransferRequest, TransferResult,
    VerifiedPayment, VerifiedTransfer,
};
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use url::Url;

/// The production API root.
pub const DEFAULT_BASE_URL: &str = "https://api.flutterwave.com";
/// Time limit for one call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);
/// Answers larger than this are cut.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;
/// Provider messages kept in errors are cut to this many characters.
const MAX_MESSAGE_CHARS: usize = 200;

/// The Flutterwave v3 client. Cheap to clone.
#[derive(Clone)]
pub struct FlutterwaveGateway {
    base: Url,
    http: reqwest::Client,
    platform: Option<ProviderCredentials>,
    organizations: Option<Arc<dyn CredentialSource>>,
    timeout: Duration,
}

impl std::fmt::Debug for FlutterwaveGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlutterwaveGateway")
            .field("base", &self.base.as_str())
            .field("platform_account", &self.platform.is_some())
            .field("per_organization", &self.organizations.is_some())
            .finish()
    }
}

impl FlutterwaveGateway {
    /// `base` is the API root (`https://api.flutterwave.com`); calls go to `{base}/v3/...`.
    /// `platform` is the account used when an organization has none of its own.
    pub fn new(base: Url, platform: Option<ProviderCredentials>, http: reqwest::Client) -> Self {
        Self {
            base,
            http,
            platform,
            organizations: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Organizations' own accounts, looked up on every call (rotation takes effect at once).
    pub fn with_organization_credentials(mut self, source: Arc<dyn CredentialSource>) -> Self {
        self.organizations = Some(source);
        self
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The account a call for `org` uses: its own, else the platform's.
    pub async fn credentials_for(
        &self,
        org: Option<OrganizationId>,
    ) -> Result<ProviderCredentials, GatewayError> {
        if let (Some(org), Some(source)) = (org, &self.organizations) {
            match source.credentials(org).await {
                Ok(Some(own)) => return Ok(own),
                Ok(None) => {}
                Err(e) => {
                    return Err(GatewayError::NotSent(format!(
                        "cannot read the organization's payment credentials: {e}"
                    )));
                }
            }
        }
        self.platform
            .clone()
            .ok_or_else(|| GatewayError::NotSent("no Flutterwave account is configured".into()))
    }

    fn url(&self, path: &str) -> Result<Url, GatewayError> {
        let mut base = self.base.clone();
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        base.join(path)
            .map_err(|_| GatewayError::Refused("invalid Flutterwave URL".into()))
    }

    /// One authenticated call; `Ok(data)` for a success envelope.
    async fn call(
        &self,
        operation: &'static str,
        org: Option<OrganizationId>,
        request: impl FnOnce(&reqwest::Client) -> Result<reqwest::RequestBuilder, GatewayError>,
    ) -> Result<Box<RawValue>, GatewayError> {
        let credentials = self.credentials_for(org).await?;
        let builder = request(&self.http)?;
        let result = self.send(builder, &credentials).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(GatewayError::Unavailable(_)) => "unavailable",
            Err(GatewayError::NotSent(_)) => "not_sent",
            Err(GatewayError::NotFound) => "not_found",
            Err(GatewayError::Refused(_)) => "refused",
        };
        metrics::counter!(
            "tiamat_integration_calls_total",
            "vendor" => "flutterwave",
            "operation" => operation,
            "outcome" => outcome
        )
        .increment(1);
        if let Err(e) = &result {
            tracing::warn!(operation, organization = org.map(|o| o.0), error = %e, "Flutterwave call failed");
        }
        result
    }

    async fn send(
        &self,
        builder: reqwest::RequestBuilder,
        credentials: &ProviderCredentials,
    ) -> Result<Box<RawValue>, GatewayError> {
        let mut response = builder
            .timeout(self.timeout)
            .bearer_auth(credentials.secret_key.expose_secret())
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            let room = MAX_RESPONSE_BYTES.saturating_sub(bytes.len());
            bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if room <= chunk.len() {
                break;
            }
        }
        let envelope: Option<Envelope> = serde_json::from_slice(&bytes).ok();
        let message = envelope
            .as_ref()
            .and_then(|e| e.message.clone())
            .map(|m| clean_message(&m, credentials))
            .unwrap_or_default();
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Err(GatewayError::NotSent(
                "Flutterwave is rate limiting (HTTP 429)".into(),
            ));
        }
        if status.is_server_error() {
            return Err(GatewayError::Unavailable(format!(
                "Flutterwave answered HTTP {}",
                status.as_u16()
            )));
        }
        if status == StatusCode::NOT_FOUND || is_not_found_message(&message) {
            return Err(GatewayError::NotFound);
        }
        if !status.is_success() {
            return Err(GatewayError::Refused(format!(
                "HTTP {}: {}",
                status.as_u16(),
                if message.is_empty() {
                    "no reason given"
                } else {
                    &message
                }
            )));
        }
        let Some(envelope) = envelope else {
            return Err(GatewayError::Unavailable(
                "Flutterwave answered with something that is not its JSON envelope".into(),
            ));
        };
        if envelope.status.as_deref() != Some("success") {
            return Err(GatewayError::Refused(if message.is_empty() {
                "Flutterwave did not report success".into()
            } else {
                message
            }));
        }
        match envelope.data {
            Some(d) if d.get() != "null" => Ok(d),
            _ => Err(GatewayError::NotFound),
        }
    }
}

#[derive(Deserialize)]
struct Envelope {
    status: Option<String>,
    message: Option<String>,
    data: Option<Box<RawValue>>,
}

/// The fields of a transaction we act on; `amount` is kept as the exact text sent.
#[derive(Deserialize)]
struct Transaction {
    id: Box<RawValue>,
    tx_ref: Option<String>,
    amount: Option<Box<RawValue>>,
    currency: Option<String>,
    status: Option<String>,
    payment_type: Option<String>,
}

#[derive(Deserialize)]
struct HostedLink {
    link: String,
}

#[derive(serde::Serialize)]
struct TransferBody<'a> {
    account_bank: &'a str,
    account_number: &'a str,
    amount: &'a RawValue,
    currency: &'a str,
    debit_currency: &'a str,
    narration: &'a str,
    reference: &'a str,
}

#[derive(Deserialize)]
struct Transfer {
    id: Box<RawValue>,
    status: Option<String>,
    reference: Option<String>,
    complete_message: Option<String>,
}

impl Transfer {
    fn into_verified(self) -> Result<VerifiedTransfer, GatewayError> {
        let status = payment_status(self.status.as_deref().unwrap_or(""));
        Ok(VerifiedTransfer {
            provider_id: raw_text(&self.id).ok_or_else(|| malformed("a transfer id"))?,
            reference: self.reference.unwrap_or_default(),
            status,
            failure_reason: match status {
                ProviderStatus::Failed => self
                    .complete_message
                    .map(|m| m.chars().take(MAX_MESSAGE_CHARS).collect())
                    .filter(|m: &String| !m.is_empty()),
                ProviderStatus::Successful | ProviderStatus::Pending => None,
            },
        })
    }
}

#[derive(serde::Serialize)]
struct RefundBody<'a> {
    amount: &'a RawValue,
    comments: &'a str,
}

/// A refund as the refund call and the refund reads answer it (the call names the payment
/// `tx_id`, the list `transaction_id`).
#[derive(Deserialize)]
struct Refund {
    id: Box<RawValue>,
    status: Option<String>,
    amount_refunded: Option<Box<RawValue>>,
    tx_id: Option<Box<RawValue>>,
    transaction_id: Option<Box<RawValue>>,
}

impl Refund {
    fn payment_id(&self) -> Option<String> {
        self.transaction_id
            .as_deref()
            .or(self.tx_id.as_deref())
            .and_then(raw_text)
    }

    fn into_provider_refund(self, currency: Currency) -> Result<ProviderRefund, GatewayError> {
        let id = raw_text(&self.id).ok_or_else(|| malformed("a refund id"))?;
        let status_text = self.status.unwrap_or_default();
        let status = refund_status(&status_text);
        let amount = self
            .amount_refunded
            .as_deref()
            .and_then(raw_text)
            .and_then(|t| amount::to_minor(&t, currency).ok())
            .map(|minor| Money {
                minor: MinorUnits(minor),
                currency,
            });
        Ok(ProviderRefund {
            id,
            status,
            amount,
            failure_reason: match status {
                ProviderStatus::Failed => Some(format!(
                    "Flutterwave reports the refund {}",
                    status_text
                        .chars()
                        .take(MAX_MESSAGE_CHARS)
                        .collect::<String>()
                )),
                ProviderStatus::Successful | ProviderStatus::Pending => None,
            },
        })
    }
}

/// Flutterwave's refund statuses: `completed` and its per-channel variants
/// (`completed-bank-transfer`, `completed-mpgs`...) are done; anything else still moves.
fn refund_status(status: &str) -> ProviderStatus {
    let s = status.trim().to_ascii_lowercase();
    if s.starts_with("completed") || s == "successful" || s == "success" {
        ProviderStatus::Successful
    } else if s.starts_with("failed") || s == "declined" || s == "rejected" || s == "cancelled" {
        ProviderStatus::Failed
    } else {
        ProviderStatus::Pending
    }
}

fn is_not_found_message(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("no transaction was found") || m.contains("no transaction found")
}

/// Provider text for an error: cut, and with the secret masked should it be echoed.
fn clean_message(message: &str, credentials: &ProviderCredentials) -> String {
    let secret = credentials.secret_key.expose_secret();
    let text = if secret.is_empty() {
        message.to_owned()
    } else {
        message.replace(secret, "…")
    };
    text.trim().chars().take(MAX_MESSAGE_CHARS).collect()
}

fn transport_error(err: reqwest::Error) -> GatewayError {
    // A failed connect sent nothing; anything later may have reached the provider.
    if err.is_connect() {
        return GatewayError::NotSent("Flutterwave: cannot connect".into());
    }
    let what = if err.is_timeout() {
        "timed out"
    } else {
        "request failed"
    };
    GatewayError::Unavailable(format!("Flutterwave: {what}"))
}

fn malformed(what: &str) -> GatewayError {
    GatewayError::Unavailable(format!("Flutterwave answered without {what}"))
}

/// A JSON number or string, as text without quotes.
fn raw_text(raw: &RawValue) -> Option<String> {
    let t = raw.get().trim();
    if let Some(inner) = t.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        return Some(inner.to_owned());
    }
    let is_number = !t.is_empty()
        && t.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'e' | b'E' | b'+'));
    is_number.then(|| t.to_owned())
}

fn payment_status(status: &str) -> ProviderStatus {
    match status.to_ascii_lowercase().as_str() {
        "successful" | "success" | "completed" => ProviderStatus::Successful,
        "failed" | "cancelled" | "canceled" | "error" | "reversed" => ProviderStatus::Failed,
        // "pending", "new", "processing", anything we do not know: not final.
        _ => ProviderStatus::Pending,
    }
}

fn verified(data: &RawValue) -> Result<VerifiedPayment, GatewayError> {
    let t: Transaction =
        serde_json::from_str(data.get()).map_err(|_| malformed("a transaction"))?;
    let provider_id = raw_text(&t.id).ok_or_else(|| malformed("a transaction id"))?;
    let currency = t
        .currency
        .as_deref()
        .and_then(|c| Currency::parse(c.trim()).ok())
        .ok_or_else(|| malformed("a currency"))?;
    let amount_text = t
        .amount
        .as_deref()
        .and_then(raw_text)
        .ok_or_else(|| malformed("an amount"))?;
    let minor = match amount::to_minor(&amount_text, currency) {
        Ok(m) => m,
        // A currency we never charge in cannot match any order, whatever the amount: report it
        // with zero so the settlement fails the order as a mismatch.
        Err(amount::AmountError::UnsupportedCurrency(_)) => 0,
        Err(e) => {
            return Err(GatewayError::Refused(format!(
                "Flutterwave reported an amount we cannot represent exactly: {e}"
            )));
        }
    };
    Ok(VerifiedPayment {
        provider_id,
        reference: t.tx_ref.unwrap_or_default(),
        status: payment_status(t.status.as_deref().unwrap_or("")),
        charged: Money {
            minor: MinorUnits(minor),
            currency,
        },
        payment_type: t.payment_type,
    })
}

/// Flutterwave transaction ids are numbers; anything else would change the path.
fn valid_provider_id(id: &str) -> Result<&str, GatewayError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(id)
    } else {
        Err(GatewayError::NotFound)
    }
}

fn amount_error(e: amount::AmountError) -> GatewayError {
    GatewayError::Refused(e.to_string())
}

#[async_trait]
impl PaymentGateway for FlutterwaveGateway {
    async fn initialise(
        &self,
        org: Option<OrganizationId>,
        request: HostedPaymentRequest,
    ) -> Result<HostedPayment, GatewayError> {
        // Refused before any call: nothing to count.
        let major = amount::to_major(request.amount.minor.0, request.amount.currency)
            .map_err(amount_error)?;
        let url = self.url("v3/payments")?;
        let mut customer = serde_json::Map::new();
        // Flutterwave requires an e-mail; public payers may have none, so a placeholder that
        // names the order keeps the checkout usable.
        let email = request
            .customer_email
            .clone()
            .unwrap_or_else(|| format!("{}@payments.invalid", request.reference));
        customer.insert("email".into(), json!(email));
        if let Some(n) = &request.customer_name {
            customer.insert("name".into(), json!(n));
        }
        if let Some(p) = &request.customer_phone {
            customer.insert("phonenumber".into(), json!(p));
        }
        let body = json!({
            "tx_ref": request.reference,
            "amount": major,
            "currency": request.amount.currency.as_str(),
            "redirect_url": request.redirect_url,
            "customer": customer,
            "customizations": { "title": request.title },
        });
        let data = self
            .call("initialise", org, |http| Ok(http.post(url).json(&body)))
            .await?;
        let link: HostedLink =
            serde_json::from_str(data.get()).map_err(|_| malformed("a payment link"))?;
        Ok(HostedPayment { link: link.link })
    }

    async fn verify_by_id(
        &self,
        org: Option<OrganizationId>,
        provider_id: &str,
    ) -> Result<VerifiedPayment, GatewayError> {
        let id = valid_provider_id(provider_id)?;
        let url = self.url(&format!("v3/transactions/{id}/verify"))?;
        let data = self
            .call("verify_by_id", org, |http| Ok(http.get(url)))
            .await?;
        verified(&data)
    }

    async fn verify_by_reference(
        &self,
        org: Option<OrganizationId>,
        reference: &str,
    ) -> Result<VerifiedPayment, GatewayError> {
        let mut url = self.url("v3/transactions/verify_by_reference")?;
        url.query_pairs_mut().append_pair("tx_ref", reference);
        let data = self
            .call("verify_by_reference", org, |http| Ok(http.get(url)))
            .await?;
        let payment = verified(&data)?;
        if payment.reference != reference {
            // Never report another payment as this one.
            return Err(GatewayError::Refused(
                "Flutterwave answered with a transaction for another reference".into(),
            ));
        }
        Ok(payment)
    }

    async fn transfer(
        &self,
        org: Option<OrganizationId>,
        request: TransferRequest,
    ) -> Result<TransferResult, GatewayError> {
        let major = amount::to_major(request.amount.minor.0, request.amount.currency)
            .map_err(amount_error)?;
        // Sent as a JSON number with exactly these digits (serialised straight from the raw
        // text, never through a float).
        let amount = RawValue::from_string(major)
            .map_err(|_| GatewayError::Refused("invalid amount".into()))?;
        let url = self.url("v3/transfers")?;
        let currency = request.amount.currency.as_str().to_owned();
        let body = TransferBody {
            account_bank: &request.bank_code,
            account_number: &request.account_number,
            amount: &amount,
            currency: &currency,
            debit_currency: &currency,
            narration: &request.narration,
            reference: &request.reference,
        };
        let data = self
            .call("transfer", org, |http| Ok(http.post(url).json(&body)))
            .await?;
        let t: Transfer = serde_json::from_str(data.get()).map_err(|_| malformed("a transfer"))?;
        Ok(TransferResult {
            provider_id: raw_text(&t.id).ok_or_else(|| malformed("a transfer id"))?,
            status: payment_status(t.status.as_deref().unwrap_or("")),
        })
    }

    async fn verify_transfer(
        &self,
        org: Option<OrganizationId>,
        provider_id: &str,
    ) -> Result<VerifiedTransfer, GatewayError> {
        let id = valid_provider_id(provider_id)?;
        let url = self.url(&format!("v3/transfers/{id}"))?;
        let data = self
            .call("verify_transfer", org, |http| Ok(http.get(url)))
            .await?;
        let t: Transfer = serde_json::from_str(data.get()).map_err(|_| malformed("a transfer"))?;
        t.into_verified()
    }

    async fn transfer_by_reference(
        &self,
        org: Option<OrganizationId>,
        reference: &str,
    ) -> Result<Option<VerifiedTransfer>, GatewayError> {
        let mut url = self.url("v3/transfers")?;
        url.query_pairs_mut().append_pair("reference", reference);
        let data = match self
            .call("transfer_by_reference", org, |http| Ok(http.get(url)))
            .await
        {
            Ok(d) => d,
            // An empty answer (`data: null`) or "not found": no transfer with that reference.
            Err(GatewayError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        let transfers: Vec<Transfer> =
            serde_json::from_str(data.get()).map_err(|_| malformed("a list of transfers"))?;
        // The filter is the provider's. Should it answer other transfers (the filter ignored, one
        // page of many), an empty match could give paid money back: report not knowing instead.
        if transfers
            .iter()
            .any(|t| t.reference.as_deref() != Some(reference))
        {
            return Err(GatewayError::Unavailable(
                "Flutterwave's transfer list is not filtered to the reference; cannot tell whether \
                 the transfer was made"
                    .into(),
            ));
        }
        // One reference is one transfer at the provider (it deduplicates by reference).
        transfers
            .into_iter()
            .next()
            .map(Transfer::into_verified)
            .transpose()
    }

    async fn refund(
        &self,
        org: Option<OrganizationId>,
        transaction_id: &str,
        amount: Money,
    ) -> Result<ProviderRefund, GatewayError> {
        let id = valid_refund_id(transaction_id)?;
        let major = amount::to_major(amount.minor.0, amount.currency).map_err(amount_error)?;
        let amount_raw = RawValue::from_string(major)
            .map_err(|_| GatewayError::Refused("invalid amount".into()))?;
        let url = self.url(&format!("v3/transactions/{id}/refund"))?;
        let body = RefundBody {
            amount: &amount_raw,
            comments: "Refund of a reversed order",
        };
        let data = self
            .call("refund", org, |http| Ok(http.post(url).json(&body)))
            .await?;
        let r: Refund = serde_json::from_str(data.get()).map_err(|_| malformed("a refund"))?;
        r.into_provider_refund(amount.currency)
    }

    async fn refund_status(
        &self,
        org: Option<OrganizationId>,
        refund_id: &str,
        currency: Currency,
    ) -> Result<ProviderRefund, GatewayError> {
        let id = valid_refund_id(refund_id)?;
        let url = self.url(&format!("v3/refunds/{id}"))?;
        let data = self
            .call("refund_status", org, |http| Ok(http.get(url)))
            .await?;
        let r: Refund = serde_json::from_str(data.get()).map_err(|_| malformed("a refund"))?;
        r.into_provider_refund(currency)
    }

    async fn refunds_of(
        &self,
        org: Option<OrganizationId>,
        transaction_id: &str,
        currency: Currency,
    ) -> Result<Vec<ProviderRefund>, GatewayError> {
        let id = valid_refund_id(transaction_id)?;
        let mut url = self.url("v3/refunds")?;
        url.query_pairs_mut().append_pair("id", id);
        let data = match self.call("refunds_of", org, |http| Ok(http.get(url))).await {
            Ok(d) => d,
            // An empty answer (`data: null`) or "no transaction found": no refunds.
            Err(GatewayError::NotFound) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let refunds: Vec<Refund> =
            serde_json::from_str(data.get()).map_err(|_| malformed("a list of refunds"))?;
        // The filter is the provider's. Should it ever answer other payments' refunds, the list
        // is not this payment's (and may be one page of many): "none found" could then cause a
        // second refund, so it is reported as not knowing.
        if refunds
            .iter()
            .any(|r| r.payment_id().as_deref() != Some(id))
        {
            return Err(GatewayError::Unavailable(
                "Flutterwave's refund list is not filtered to the payment; cannot tell whether it \
                 was refunded"
                    .into(),
            ));
        }
        refunds
            .into_iter()
            .map(|r| r.into_provider_refund(currency))
            .collect()
    }
}

/// A refund id or transaction id as a path segment: Flutterwave's are numbers, and anything else
/// would change the path.
fn valid_refund_id(id: &str) -> Result<&str, GatewayError> {
    valid_provider_id(id)
}

/// Parses a webhook body's payload as JSON for storage (after authentication).
pub fn payload_json(raw_body: &[u8]) -> Option<Value> {
    serde_json::from_slice(raw_body).ok()
}
