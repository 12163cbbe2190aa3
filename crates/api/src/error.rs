//! Every error leaves as RFC 9457 problem+json with a stable `code`.

use actix_web::http::StatusCode;
use actix_web::http::header::ContentType;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use kernel::{DomainError, FieldError};
use orgs::AuthFailure;
use serde::Serialize;
use utoipa::ToSchema;

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable machine-readable code, e.g. `validation_failed`, `not_found`.
    pub code: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("unauthenticated: {}", .0.reason())]
    Auth(AuthFailure),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("no such route")]
    NoRoute,
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, String, Vec<FieldError>) {
        match self {
            ApiError::Domain(d) => match d {
                DomainError::NotFound(what) => (
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("{what} not found"),
                    vec![],
                ),
                DomainError::Validation(errs) => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation_failed",
                    "the request has invalid fields".into(),
                    errs.clone(),
                ),
                DomainError::Conflict(m) => (StatusCode::CONFLICT, "conflict", m.clone(), vec![]),
                DomainError::Forbidden(m) => {
                    (StatusCode::FORBIDDEN, "forbidden", m.clone(), vec![])
                }
                DomainError::Unavailable(m) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "integration_unavailable",
                    m.clone(),
                    vec![],
                ),
                DomainError::Internal(_) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "an internal error occurred".into(),
                    vec![],
                ),
            },
            ApiError::Auth(AuthFailure::Unavailable) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "auth_unavailable",
                AuthFailure::Unavailable.detail().into(),
                vec![],
            ),
            ApiError::Auth(f) => (
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                f.detail().into(),
                vec![],
            ),
            ApiError::BadRequest(m) => (
                StatusCode::BAD_REQUEST,
                "malformed_request",
                m.clone(),
                vec![],
            ),
            ApiError::PayloadTooLarge(m) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                m.clone(),
                vec![],
            ),
            ApiError::NoRoute => (
                StatusCode::NOT_FOUND,
                "not_found",
                "no such route".into(),
                vec![],
            ),
        }
    }

    pub fn problem(&self) -> Problem {
        let (status, code, detail, errors) = self.parts();
        Problem {
            kind: format!("urn:tiamat:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
            code,
            errors,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.parts().0
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Domain(DomainError::Internal(cause)) = self {
            tracing::error!(%cause, "internal error");
        }
        let problem = self.problem();
        let mut res = HttpResponse::build(self.status_code());
        res.content_type(ContentType(mime_problem()));
        if let ApiError::Auth(f) = self
            && *f != AuthFailure::Unavailable
        {
            res.insert_header(("WWW-Authenticate", "Bearer"));
        }
        res.json(problem)
    }
}

fn mime_problem() -> actix_web::mime::Mime {
    "application/problem+json"
        .parse()
        .unwrap_or(actix_web::mime::APPLICATION_JSON)
}

pub type ApiResult<T> = Result<T, ApiError>;

pub async fn not_found() -> HttpResponse {
    ApiError::NoRoute.error_response()
}

/// Syntax errors are 400; well-formed JSON with wrong or unknown fields is 422.
pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(crate::MAX_JSON_BODY)
        .error_handler(|err, _req: &HttpRequest| {
            use actix_web::error::JsonPayloadError as J;
            let api = match &err {
                J::OverflowKnownLength { .. } | J::Overflow { .. } => ApiError::PayloadTooLarge(
                    format!("the body is larger than {} bytes", crate::MAX_JSON_BODY),
                ),
                J::ContentType => ApiError::BadRequest("send the body as application/json".into()),
                J::Deserialize(e) if e.is_data() => ApiError::Domain(DomainError::Validation(
                    vec![FieldError::new(field_of(e), clean(e))],
                )),
                J::Deserialize(e) => ApiError::BadRequest(format!("malformed JSON: {e}")),
                other => ApiError::BadRequest(other.to_string()),
            };
            api.into()
        })
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err, _req| {
        let msg = err.to_string();
        let field = msg
            .split('`')
            .nth(1)
            .filter(|_| msg.contains("field"))
            .unwrap_or("query")
            .to_owned();
        ApiError::Domain(DomainError::Validation(vec![FieldError::new(
            field,
            msg.replace("Query deserialize error: ", ""),
        )]))
        .into()
    })
}

/// A path id that is not a number names nothing: 404.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default()
        .error_handler(|_err, _req| ApiError::Domain(DomainError::NotFound("resource")).into())
}

/// serde_json names the offending field inside backticks for unknown/missing fields.
fn field_of(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    let named = msg.split('`').nth(1).map(str::to_owned);
    match named {
        Some(f) if msg.starts_with("unknown field") || msg.starts_with("missing field") => f,
        _ => "body".to_owned(),
    }
}

fn clean(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg,
    }
}
