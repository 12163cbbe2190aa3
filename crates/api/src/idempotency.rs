//! `Idempotency-Key` for POSTs that command hardware or move money (DESIGN.md §4): the first
//! successful answer is stored per organization and key, and a repeat of the same request gets it
//! back (with `Idempotent-Replayed: true`) without doing anything again.

use std::future::Future;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use kernel::{DomainError, FieldError, Principal};
use orgs::RememberedResponse;
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub const HEADER: &str = "idempotency-key";

fn key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(v) = req.headers().get(HEADER) else {
        return Ok(None);
    };
    let k = v.to_str().map(str::trim).unwrap_or("");
    if k.is_empty() || k.len() > 200 {
        return Err(DomainError::Validation(vec![FieldError::new(
            "Idempotency-Key",
            "must be 1 to 200 visible characters",
        )])
        .into());
    }
    Ok(Some(k.to_owned()))
}

fn respond(r: &RememberedResponse, replayed: bool) -> HttpResponse {
    let mut res = HttpResponse::build(StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK));
    if replayed {
        res.insert_header(("Idempotent-Replayed", "true"));
    }
    res.json(&r.body)
}

/// Runs `work` once per (organization, key); `request` is what makes two requests "the same".
pub async fn run<F, Fut>(
    state: &AppState,
    who: &Principal,
    req: &HttpRequest,
    request: &serde_json::Value,
    work: F,
) -> ApiResult<HttpResponse>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ApiResult<(StatusCode, serde_json::Value)>>,
{
    let Some(key) = key(req)? else {
        let (status, body) = work().await?;
        return Ok(HttpResponse::build(status).json(body));
    };
    let fingerprint =
        Sha256::digest(format!("{} {}\n{}", req.method(), req.path(), request).as_bytes()).to_vec();
    let org = who.organization_id;
    if let Some(first) = state.idempotency.recall(org, &key).await? {
        if first.fingerprint != fingerprint {
            return Err(DomainError::Validation(vec![FieldError::new(
                "Idempotency-Key",
                "was already used for a different request",
            )])
            .into());
        }
        return Ok(respond(&first, true));
    }
    let (status, body) = work().await?;
    // Only successes are remembered: a failed attempt may be retried with the same key.
    let first = state
        .idempotency
        .remember(
            org,
            &key,
            RememberedResponse {
                fingerprint,
                status: status.as_u16(),
                body,
            },
        )
        .await?;
    Ok(respond(&first, false))
}
