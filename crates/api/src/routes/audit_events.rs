use actix_web::{HttpResponse, get, web};
use kernel::AccountId;
use orgs::{AuditEvent, AuditFilter};
use serde::Deserialize;
use utoipa::IntoParams;

use super::{Paged, State, page};
use crate::auth::Caller;
use crate::error::{ApiResult, Problem};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    /// e.g. `customer`, `grid`, `member`, `api_key`, `organization`, `agent`.
    pub resource_type: Option<String>,
    pub resource_id: Option<i64>,
    pub actor_account_id: Option<AccountId>,
    /// e.g. `customer.created`.
    pub action: Option<String>,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(list);
}

/// Who did what to which resource, oldest first. Needs `audit_read`.
#[utoipa::path(get, path = "/api/v1/audit-events", tag = "audit", params(ListQuery),
    responses((status = 200, body = Paged<AuditEvent>), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
#[get("/audit-events")]
pub async fn list(
    caller: Caller,
    state: State,
    q: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let q = q.into_inner();
    let page = page(q.limit, q.cursor.as_deref())?;
    let filter = AuditFilter {
        resource_type: q.resource_type,
        resource_id: q.resource_id,
        actor_account_id: q.actor_account_id,
        action: q.action,
    };
    Ok(HttpResponse::Ok().json(Paged::from(
        state.services.audit.list(&caller, filter, page).await?,
    )))
}
