//! Inbound webhooks from vendors. Stored first (deduplicated), acknowledged at once, processed by
//! a worker: ChirpStack does not retry, so a slow answer would lose events.

use actix_web::{HttpRequest, HttpResponse, post, web};
use chirpstack::Encoding;
use grids::telemetry::InboundEvent;
use kernel::DomainError;
use orgs::AuthFailure;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use utoipa::{IntoParams, ToSchema};

use super::State;
use crate::error::{ApiError, ApiResult, Problem};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// `up`, `join`, `ack`, `txack`, `log`, `status`, `location`; others are accepted and ignored.
    pub event: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    /// `false` for a duplicate or an ignored event type.
    pub stored: bool,
    pub duplicate: bool,
    pub ignored: bool,
}

fn presented_secret(req: &HttpRequest) -> Option<&str> {
    if let Some(v) = req
        .headers()
        .get("x-webhook-token")
        .and_then(|v| v.to_str().ok())
    {
        return Some(v.trim());
    }
    req.headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

fn count(event: &str, outcome: &'static str) {
    let event = if chirpstack::is_known(event) {
        event.to_owned()
    } else {
        "other".to_owned()
    };
    metrics::counter!("tiamat_webhook_events_total", "source" => "chirpstack", "event" => event, "outcome" => outcome).increment(1);
}

/// ChirpStack HTTP-integration events (JSON or Protobuf, as the integration is configured).
/// Authenticated by the shared secret in `X-Webhook-Token` (or `Authorization: Bearer`), compared
/// in constant time. A malformed body is 400 and stored nowhere; a repeat (same deduplication
/// key) is acknowledged without storing it again.
#[utoipa::path(post, path = "/api/v1/integrations/chirpstack/events", tag = "integrations", params(EventQuery),
    request_body(content = String, description = "The event as ChirpStack encodes it", content_type = "application/json"),
    security(()),
    responses((status = 200, body = Accepted), (status = 400, body = Problem), (status = 401, body = Problem), (status = 413, body = Problem), (status = 503, body = Problem)))]
#[post("/integrations/chirpstack/events")]
pub async fn chirpstack_events(
    state: State,
    req: HttpRequest,
    q: web::Query<EventQuery>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let Some(secret) = state.chirpstack_webhook_secret.as_deref() else {
        return Err(DomainError::Unavailable(
            "the ChirpStack integration is not configured".into(),
        )
        .into());
    };
    let authentic =
        presented_secret(&req).is_some_and(|p| bool::from(p.as_bytes().ct_eq(secret.as_bytes())));
    if !authentic {
        metrics::counter!("tiamat_auth_failures_total", "reason" => "webhook_secret").increment(1);
        return Err(ApiError::Auth(AuthFailure::MalformedKey));
    }
    let event = q.event.clone().unwrap_or_default();
    if event.is_empty() {
        return Err(ApiError::BadRequest(
            "the `event` query parameter is required".into(),
        ));
    }
    if !chirpstack::is_known(&event) {
        count(&event, "ignored");
        return Ok(HttpResponse::Ok().json(Accepted {
            stored: false,
            duplicate: false,
            ignored: true,
        }));
    }
    let encoding = Encoding::from_content_type(
        req.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
    );
    let parsed = match chirpstack::parse(&event, encoding, &body) {
        Ok(p) => p,
        Err(e) => {
            count(&event, "malformed");
            return Err(ApiError::BadRequest(e.to_string()));
        }
    };
    let stored = state
        .inbox
        .store(InboundEvent {
            source: "chirpstack",
            event_type: event.clone(),
            dedup_key: parsed.dedup_key,
            dev_eui: parsed.dev_eui,
            payload: parsed.json,
        })
        .await?;
    count(&event, if stored { "stored" } else { "duplicate" });
    if stored {
        state.wakes.inbox.notify_one();
    }
    Ok(HttpResponse::Ok().json(Accepted {
        stored,
        duplicate: !stored,
        ignored: false,
    }))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(256 * 1024))
        .service(chirpstack_events);
}
