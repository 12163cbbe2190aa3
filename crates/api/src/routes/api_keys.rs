use actix_web::{HttpResponse, delete, get, post, web};
use chrono::{DateTime, Utc};
use kernel::{ApiKeyId, OrganizationId, Role};
use orgs::{ApiKey, IssuedApiKey};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::{Paged, State, created, page};
use crate::auth::Caller;
use crate::error::{ApiResult, Problem};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    /// What the key is for, e.g. "yeti grid sync".
    pub name: String,
    /// The role the key acts with; never above the creator's.
    pub role: Role,
    pub expires_at: Option<DateTime<Utc>>,
    /// Platform SUPERADMINs may issue keys for another organization.
    pub organization_id: Option<OrganizationId>,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(list)
        .service(create)
        .service(get_one)
        .service(revoke);
}

/// Keys of the organization, without secrets. Needs `api_key_manage`.
#[utoipa::path(get, path = "/api/v1/api-keys", tag = "api-keys", params(ListQuery),
    responses((status = 200, body = Paged<ApiKey>), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
#[get("/api-keys")]
pub async fn list(
    caller: Caller,
    state: State,
    q: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let page = page(q.limit, q.cursor.as_deref())?;
    Ok(HttpResponse::Ok().json(Paged::from(
        state.services.api_keys.list(&caller, page).await?,
    )))
}

/// Issues a key. The answer carries `secret`, shown this once only. Send it as `X-API-Key`.
#[utoipa::path(post, path = "/api/v1/api-keys", tag = "api-keys", request_body = CreateApiKey,
    responses((status = 201, body = IssuedApiKey), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
#[post("/api-keys")]
pub async fn create(
    caller: Caller,
    state: State,
    body: web::Json<CreateApiKey>,
) -> ApiResult<HttpResponse> {
    let b = body.into_inner();
    let issued = state
        .services
        .api_keys
        .create(&caller, &b.name, b.role, b.expires_at, b.organization_id)
        .await?;
    Ok(created(issued))
}

#[utoipa::path(get, path = "/api/v1/api-keys/{id}", tag = "api-keys",
    responses((status = 200, body = ApiKey), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
#[get("/api-keys/{id}")]
pub async fn get_one(caller: Caller, state: State, id: web::Path<i64>) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.services.api_keys.get(&caller, ApiKeyId(*id)).await?))
}

/// Revokes a key; it stops working on the next request.
#[utoipa::path(delete, path = "/api/v1/api-keys/{id}", tag = "api-keys",
    responses((status = 200, body = ApiKey), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
#[delete("/api-keys/{id}")]
pub async fn revoke(caller: Caller, state: State, id: web::Path<i64>) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(
        state
            .services
            .api_keys
            .revoke(&caller, ApiKeyId(*id))
            .await?,
    ))
}
