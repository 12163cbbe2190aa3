//! An organization's own payment-provider account (predecessor ADR-003). Without one, its
//! payments go through the platform account. Secrets go in and are never answered back.

use actix_web::{HttpResponse, delete, get, put, web};
use kernel::OrganizationId;
use payments::{CredentialsSummary, CredentialsUpdate};
use secrecy::SecretString;
use serde::Deserialize;
use utoipa::ToSchema;

use super::{State, no_content};
use crate::auth::Caller;
use crate::error::{ApiResult, Problem};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutPaymentCredentials {
    /// Flutterwave public key (`FLWPUBK-...`).
    pub public_key: Option<String>,
    /// Flutterwave secret key (`FLWSECK-...`); stored encrypted, never shown again.
    #[schema(value_type = String)]
    pub secret_key: SecretString,
    /// The secret hash set in the Flutterwave dashboard for webhooks (`verif-hash`); stored
    /// encrypted. With it, webhooks for this account go to
    /// `/api/v1/integrations/flutterwave/webhook/{organization_id}`.
    #[schema(value_type = Option<String>)]
    pub webhook_hash: Option<SecretString>,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(get_credentials)
        .service(put_credentials)
        .service(delete_credentials);
}

/// Which of the organization's own Flutterwave keys are set (never the keys). Needs
/// `order_manage` (ADMIN, FINANCE).
#[utoipa::path(get, path = "/api/v1/organizations/{id}/payment-credentials", tag = "payments",
    responses((status = 200, body = CredentialsSummary), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
#[get("/organizations/{id}/payment-credentials")]
pub async fn get_credentials(
    caller: Caller,
    state: State,
    id: web::Path<i64>,
) -> ApiResult<HttpResponse> {
    let summary = state
        .payment_credentials
        .get(&caller, OrganizationId(*id))
        .await?;
    Ok(HttpResponse::Ok().json(summary))
}

/// Sets (replaces) the organization's own Flutterwave account; its payments use it from now
/// on. Audited (without the secrets). Needs `order_manage`; 503 when no encryption key is
/// configured (`TIAMAT_PAYMENT_CREDENTIALS_KEY`).
#[utoipa::path(put, path = "/api/v1/organizations/{id}/payment-credentials", tag = "payments",
    request_body = PutPaymentCredentials,
    responses((status = 200, body = CredentialsSummary), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
#[put("/organizations/{id}/payment-credentials")]
pub async fn put_credentials(
    caller: Caller,
    state: State,
    id: web::Path<i64>,
    body: web::Json<PutPaymentCredentials>,
) -> ApiResult<HttpResponse> {
    let b = body.into_inner();
    let summary = state
        .payment_credentials
        .put(
            &caller,
            OrganizationId(*id),
            CredentialsUpdate {
                public_key: b.public_key,
                secret_key: b.secret_key,
                webhook_hash: b.webhook_hash,
            },
        )
        .await?;
    Ok(HttpResponse::Ok().json(summary))
}

/// Removes the organization's own account: its payments go through the platform account again.
/// Audited. Needs `order_manage`.
#[utoipa::path(delete, path = "/api/v1/organizations/{id}/payment-credentials", tag = "payments",
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
#[delete("/organizations/{id}/payment-credentials")]
pub async fn delete_credentials(
    caller: Caller,
    state: State,
    id: web::Path<i64>,
) -> ApiResult<HttpResponse> {
    state
        .payment_credentials
        .delete(&caller, OrganizationId(*id))
        .await?;
    Ok(no_content())
}
