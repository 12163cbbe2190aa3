//! The `Caller` extractor: every protected route takes one, so no route forgets to authenticate.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpMessage, HttpRequest, dev::Payload, web};
use kernel::Principal;
use orgs::{AuthFailure, Credential};

use crate::error::ApiError;
use crate::state::AppState;

/// The authenticated principal of a request.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl std::ops::Deref for Caller {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.0
    }
}

fn credential(req: &HttpRequest) -> Result<Credential<'_>, AuthFailure> {
    if let Some(value) = req.headers().get("authorization") {
        let value = value
            .to_str()
            .map_err(|_| AuthFailure::InvalidToken("malformed"))?;
        let (scheme, token) = value
            .split_once(' ')
            .ok_or(AuthFailure::InvalidToken("malformed"))?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(AuthFailure::InvalidToken("malformed"));
        }
        return Ok(Credential::Bearer(token.trim()));
    }
    if let Some(value) = req.headers().get("x-api-key") {
        let value = value.to_str().map_err(|_| AuthFailure::MalformedKey)?;
        return Ok(Credential::ApiKey(value.trim()));
    }
    Err(AuthFailure::Missing)
}

/// Browsers cannot set headers on a WebSocket upgrade; they send `?access_token=`.
pub fn query_token(req: &HttpRequest) -> Option<String> {
    web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.get("access_token").cloned())
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            if let Some(p) = req.extensions().get::<Caller>() {
                return Ok(p.clone());
            }
            let state = req
                .app_data::<web::Data<AppState>>()
                .ok_or(ApiError::Domain(kernel::DomainError::Internal(
                    "state missing".into(),
                )))?;
            let result = match credential(&req) {
                Ok(c) => state.auth.authenticate(c).await,
                Err(f) => Err(f),
            };
            match result {
                Ok(principal) => {
                    let caller = Caller(principal);
                    req.extensions_mut().insert(caller.clone());
                    Ok(caller)
                }
                Err(failure) => {
                    metrics::counter!("tiamat_auth_failures_total", "reason" => failure.reason())
                        .increment(1);
                    tracing::info!(
                        reason = failure.reason(),
                        path = req.path(),
                        "authentication failed"
                    );
                    Err(ApiError::Auth(failure))
                }
            }
        })
    }
}
