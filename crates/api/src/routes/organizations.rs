use actix_web::{HttpResponse, delete, get, patch, post, web};
use kernel::OrganizationId;
use orgs::{Organization, OrganizationFields, OrganizationType};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::{Paged, State, created, no_content, nullable, page, required_if_present};
use crate::auth::Caller;
use crate::error::{ApiResult, Problem};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrganization {
    pub name: String,
    pub formal_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub address: Option<String>,
    pub organization_type: Option<OrganizationType>,
}

/// Fields to change; `null` clears an optional field.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrganization {
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub formal_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub email: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub address: Option<Option<String>>,
    pub organization_type: Option<OrganizationType>,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(list)
        .service(create)
        .service(get_one)
        .service(update)
        .service(remove);
}

/// Organizations the caller can see: its own, or all for platform SUPERADMINs. Needs `organization_read`.
#[utoipa::path(get, path = "/api/v1/organizations", tag = "organizations", params(ListQuery),
    responses((status = 200, body = Paged<Organization>), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
#[get("/organizations")]
pub async fn list(
    caller: Caller,
    state: State,
    q: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let page = page(q.limit, q.cursor.as_deref())?;
    let result = state.services.organizations.list(&caller, page).await?;
    Ok(HttpResponse::Ok().json(Paged::from(result)))
}

/// Creates a tenant. Platform SUPERADMINs only (`organization_create`).
#[utoipa::path(post, path = "/api/v1/organizations", tag = "organizations", request_body = CreateOrganization,
    responses((status = 201, body = Organization), (status = 401, body = Problem), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
#[post("/organizations")]
pub async fn create(
    caller: Caller,
    state: State,
    body: web::Json<CreateOrganization>,
) -> ApiResult<HttpResponse> {
    let b = body.into_inner();
    let fields = OrganizationFields {
        name: Some(b.name),
        formal_name: Some(b.formal_name),
        email: Some(b.email),
        phone: Some(b.phone),
        address: Some(b.address),
        organization_type: b.organization_type,
    };
    Ok(created(
        state.services.organizations.create(&caller, fields).await?,
    ))
}

/// One organization. Needs `organization_read`; another tenant's answers 404.
#[utoipa::path(get, path = "/api/v1/organizations/{id}", tag = "organizations",
    responses((status = 200, body = Organization), (status = 401, body = Problem), (status = 404, body = Problem)))]
#[get("/organizations/{id}")]
pub async fn get_one(caller: Caller, state: State, id: web::Path<i64>) -> ApiResult<HttpResponse> {
    let org = state
        .services
        .organizations
        .get(&caller, OrganizationId(*id))
        .await?;
    Ok(HttpResponse::Ok().json(org))
}

/// Changes an organization. Needs `organization_manage` (ADMIN of that organization).
#[utoipa::path(patch, path = "/api/v1/organizations/{id}", tag = "organizations", request_body = UpdateOrganization,
    responses((status = 200, body = Organization), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
#[patch("/organizations/{id}")]
pub async fn update(
    caller: Caller,
    state: State,
    id: web::Path<i64>,
    body: web::Json<UpdateOrganization>,
) -> ApiResult<HttpResponse> {
    let b = body.into_inner();
    let fields = OrganizationFields {
        name: required_if_present("name", b.name)?,
        formal_name: b.formal_name,
        email: b.email,
        phone: b.phone,
        address: b.address,
        organization_type: b.organization_type,
    };
    let org = state
        .services
        .organizations
        .update(&caller, OrganizationId(*id), fields)
        .await?;
    Ok(HttpResponse::Ok().json(org))
}

/// Soft-deletes a tenant. Platform SUPERADMINs only; the platform organization cannot be deleted.
#[utoipa::path(delete, path = "/api/v1/organizations/{id}", tag = "organizations",
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
#[delete("/organizations/{id}")]
pub async fn remove(caller: Caller, state: State, id: web::Path<i64>) -> ApiResult<HttpResponse> {
    state
        .services
        .organizations
        .delete(&caller, OrganizationId(*id))
        .await?;
    Ok(no_content())
}
