use actix_web::{HttpResponse, get};
use kernel::{
    AccountId, AccountKind, ApiKeyId, CustomerId, GridId, MemberId, OrganizationId, Permission,
    Role,
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{ApiResult, Problem};

/// Who the caller is and what it may do.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub account_id: Option<AccountId>,
    pub account_type: AccountKind,
    pub organization_id: OrganizationId,
    pub role: Role,
    /// Member of the platform organization.
    pub in_platform_org: bool,
    pub member_id: Option<MemberId>,
    pub customer_id: Option<CustomerId>,
    pub grid_id: Option<GridId>,
    /// Set when the caller authenticated with an API key.
    pub api_key_id: Option<ApiKeyId>,
    pub permissions: Vec<Permission>,
}

/// The caller's identity, organization, role and permissions.
#[utoipa::path(get, path = "/api/v1/me", tag = "me",
    responses((status = 200, body = Me), (status = 401, body = Problem, content_type = "application/problem+json")))]
#[get("/me")]
pub async fn me(caller: Caller) -> ApiResult<HttpResponse> {
    let p = &caller.0;
    Ok(HttpResponse::Ok().json(Me {
        account_id: p.account_id,
        account_type: p.kind,
        organization_id: p.organization_id,
        role: p.role,
        in_platform_org: p.in_platform_org,
        member_id: p.member_id(),
        customer_id: p.customer_id(),
        grid_id: p.grid_id,
        api_key_id: p.api_key_id(),
        permissions: p.role.permissions().to_vec(),
    }))
}
