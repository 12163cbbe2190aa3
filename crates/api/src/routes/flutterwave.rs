//! Flutterwave: the webhook, hosted payments into wallets (authenticated) and meters (public),
//! and the public status check and cancel by unguessable reference.
//!
//! The webhook is authenticated on the raw body before anything else (`verif-hash` or the
//! HMAC `flutterwave-signature`, constant time), stored deduplicated in the inbox, and answered at
//! once; the inbox worker re-verifies the payment with Flutterwave's API before any credit.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use grids::telemetry::InboundEvent;
use kernel::{Currency, DomainError, OrganizationId, WalletId};
use orgs::AuthFailure;
use payments::Money;
use payments::checkout::{
    CheckoutStarted, MeterPayment, Payer, PaymentStatus, VerificationResult, WalletPayment,
};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::State;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, Problem};

/// The source name of Flutterwave rows in the inbox.
pub const SOURCE: &str = "flutterwave";

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAccepted {
    /// `false` for a repeat of an event already stored.
    pub stored: bool,
    pub duplicate: bool,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    // Webhook bodies are bounded by actix's default payload limit (256 KiB).
    cfg.service(webhook)
        .service(organization_webhook)
        .service(pay_into_wallet)
        .service(verify)
        .service(pay_meter)
        .service(status)
        .service(cancel);
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn count(event: &str, outcome: &'static str) {
    let event = match event {
        "charge.completed" | "transfer.completed" => event.to_owned(),
        _ => "other".to_owned(),
    };
    metrics::counter!("tiamat_webhook_events_total", "source" => SOURCE, "event" => event, "outcome" => outcome)
        .increment(1);
}

async fn accept(
    state: &State,
    req: &HttpRequest,
    body: &[u8],
    secret: Option<SecretString>,
) -> ApiResult<HttpResponse> {
    let Some(secret) = secret else {
        return Err(
            DomainError::Unavailable("the Flutterwave webhook is not configured".into()).into(),
        );
    };
    let authentic = flutterwave::webhook::is_authentic(
        &secret,
        header(req, flutterwave::webhook::VERIF_HASH_HEADER),
        header(req, flutterwave::webhook::SIGNATURE_HEADER),
        body,
    );
    if !authentic {
        metrics::counter!("tiamat_auth_failures_total", "reason" => "flutterwave_signature")
            .increment(1);
        count("", "unauthenticated");
        return Err(ApiError::Auth(AuthFailure::MalformedKey));
    }
    let event = match flutterwave::webhook::parse(body) {
        Ok(e) => e,
        Err(e) => {
            count("", "malformed");
            return Err(ApiError::BadRequest(e.to_string()));
        }
    };
    let payload = flutterwave::payload_json(body)
        .ok_or_else(|| ApiError::BadRequest("the body is not JSON".into()))?;
    let stored = state
        .inbox
        .store(InboundEvent {
            source: SOURCE,
            event_type: event.name().to_owned(),
            dedup_key: event.dedup_key(body),
            dev_eui: None,
            payload,
        })
        .await?;
    count(event.name(), if stored { "stored" } else { "duplicate" });
    if stored {
        state.wakes.inbox.notify_one();
    }
    Ok(HttpResponse::Ok().json(WebhookAccepted {
        stored,
        duplicate: !stored,
    }))
}

/// Flutterwave webhooks for the platform account (`TIAMAT_FLUTTERWAVE_WEBHOOK_HASH`). A missing
/// or wrong `verif-hash` (or `flutterwave-signature`) is 401 and nothing is stored; a repeat is
/// acknowledged without storing it again. Payments are credited only after re-verification
/// with Flutterwave's API.
#[utoipa::path(post, path = "/api/v1/integrations/flutterwave/webhook", tag = "integrations",
    request_body(content = String, description = "The event as Flutterwave sends it", content_type = "application/json"),
    security(()),
    responses((status = 200, body = WebhookAccepted), (status = 400, body = Problem), (status = 401, body = Problem), (status = 413, body = Problem), (status = 503, body = Problem)))]
#[post("/integrations/flutterwave/webhook")]
pub async fn webhook(state: State, req: HttpRequest, body: web::Bytes) -> ApiResult<HttpResponse> {
    let secret = state.flutterwave_webhook_hash.as_deref().cloned();
    accept(&state, &req, &body, secret).await
}

/// Webhooks of an organization's own Flutterwave account, checked against its own secret hash
/// (the platform's when it set none).
#[utoipa::path(post, path = "/api/v1/integrations/flutterwave/webhook/{organization_id}", tag = "integrations",
    request_body(content = String, description = "The event as Flutterwave sends it", content_type = "application/json"),
    security(()),
    responses((status = 200, body = WebhookAccepted), (status = 400, body = Problem), (status = 401, body = Problem), (status = 413, body = Problem), (status = 503, body = Problem)))]
#[post("/integrations/flutterwave/webhook/{organization_id}")]
pub async fn organization_webhook(
    state: State,
    req: HttpRequest,
    organization_id: web::Path<i64>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let own = state
        .payment_credentials
        .webhook_hash(OrganizationId(*organization_id))
        .await?;
    let secret = own.or_else(|| state.flutterwave_webhook_hash.as_deref().cloned());
    accept(&state, &req, &body, secret).await
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartWalletPayment {
    pub wallet_id: WalletId,
    /// Minor units (kobo, cents).
    pub amount: i64,
    pub currency: Currency,
    /// Where Flutterwave sends the payer afterwards (`?status=...&tx_ref=...` is appended).
    pub redirect_url: String,
    pub customer_email: Option<String>,
    pub customer_name: Option<String>,
    pub customer_phone: Option<String>,
}

/// Opens a Flutterwave payment page to pay into a wallet (an INITIALISED order with an
/// unguessable reference). Finance roles and admins pay into any wallet of their organization, a
/// customer into its own, an agent into its own. Takes `Idempotency-Key`.
#[utoipa::path(post, path = "/api/v1/payments/flutterwave", tag = "payments",
    request_body = StartWalletPayment,
    params(("Idempotency-Key" = Option<String>, Header, description = "Repeat-safe key")),
    responses((status = 201, body = CheckoutStarted), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
#[post("/payments/flutterwave")]
pub async fn pay_into_wallet(
    caller: Caller,
    state: State,
    req: HttpRequest,
    body: web::Json<StartWalletPayment>,
) -> ApiResult<HttpResponse> {
    let b = body.into_inner();
    let fingerprint = serde_json::to_value(&b).unwrap_or_default();
    let key = req
        .headers()
        .get(crate::idempotency::HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_owned());
    crate::idempotency::run(&state, &caller, &req, &fingerprint, || async {
        let started = state
            .checkout
            .pay_into_wallet(
                &caller,
                WalletPayment {
                    wallet_id: b.wallet_id,
                    amount: Money::new(b.amount, b.currency),
                    payer: Payer {
                        email: b.customer_email.clone(),
                        name: b.customer_name.clone(),
                        phone: b.customer_phone.clone(),
                        redirect_url: b.redirect_url.clone(),
                    },
                    idempotency_key: key,
                },
            )
            .await?;
        Ok((
            StatusCode::CREATED,
            serde_json::to_value(started).map_err(|e| DomainError::Internal(e.to_string()))?,
        ))
    })
    .await
}

/// Re-verifies a payment with Flutterwave now (e.g. after the payer came back) and answers the
/// order's status. Finance roles, staff who read money, or the payment's author.
#[utoipa::path(post, path = "/api/v1/payments/{reference}/verify", tag = "payments",
    responses((status = 200, body = VerificationResult), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 503, body = Problem)))]
#[post("/payments/{reference}/verify")]
pub async fn verify(
    caller: Caller,
    state: State,
    reference: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let result = state.checkout.verify(&caller, &reference).await?;
    Ok(HttpResponse::Ok().json(result))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartMeterPayment {
    /// Minor units of the meter's currency.
    pub amount: i64,
    /// Optional; must be the meter's currency.
    pub currency: Option<Currency>,
    pub redirect_url: String,
    pub customer_email: Option<String>,
    pub customer_name: Option<String>,
    pub customer_phone: Option<String>,
}

/// Public: opens a Flutterwave payment page to top up a commissioned meter by its serial.
/// Answers the page link and the unguessable reference to poll or cancel with.
#[utoipa::path(post, path = "/api/v1/public/meters/{serial}/payments", tag = "payments",
    request_body = StartMeterPayment, security(()),
    responses((status = 201, body = CheckoutStarted), (status = 400, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
#[post("/public/meters/{serial}/payments")]
pub async fn pay_meter(
    state: State,
    serial: web::Path<String>,
    body: web::Json<StartMeterPayment>,
) -> ApiResult<HttpResponse> {
    let b = body.into_inner();
    let started = state
        .checkout
        .pay_meter(MeterPayment {
            serial: serial.into_inner(),
            amount_minor: b.amount,
            currency: b.currency,
            payer: Payer {
                email: b.customer_email,
                name: b.customer_name,
                phone: b.customer_phone,
                redirect_url: b.redirect_url,
            },
        })
        .await?;
    Ok(HttpResponse::Created().json(started))
}

/// Public: a payment's status and amount by its reference; a payment still INITIALISED is first
/// verified with Flutterwave.
#[utoipa::path(get, path = "/api/v1/public/payments/{reference}", tag = "payments", security(()),
    responses((status = 200, body = PaymentStatus), (status = 404, body = Problem)))]
#[get("/public/payments/{reference}")]
pub async fn status(state: State, reference: web::Path<String>) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.checkout.status(&reference).await?))
}

/// Public: cancels a payment that is still INITIALISED (409 otherwise).
#[utoipa::path(post, path = "/api/v1/public/payments/{reference}/cancel", tag = "payments", security(()),
    responses((status = 200, body = PaymentStatus), (status = 404, body = Problem), (status = 409, body = Problem)))]
#[post("/public/payments/{reference}/cancel")]
pub async fn cancel(state: State, reference: web::Path<String>) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.checkout.cancel(&reference).await?))
}
