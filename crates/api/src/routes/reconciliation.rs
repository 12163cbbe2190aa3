//! A grid's reconciliation mode: whether the reconciler corrects drifted meters (ON), only
//! reports what it would do (SHADOW), or leaves the grid alone (OFF).

use actix_web::{HttpResponse, get, put, web};
use kernel::GridId;
use meters::{GridReconciliation, ReconciliationMode};
use serde::Deserialize;
use utoipa::ToSchema;

use super::State;
use crate::auth::Caller;
use crate::error::{ApiResult, Problem};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetMode {
    pub mode: ReconciliationMode,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(get_mode).service(set_mode);
}

/// The grid's reconciliation mode. Needs `grid_read`.
#[utoipa::path(get, path = "/api/v1/grids/{id}/reconciliation", tag = "commands",
    responses((status = 200, body = GridReconciliation), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
#[get("/grids/{id}/reconciliation")]
pub async fn get_mode(caller: Caller, state: State, id: web::Path<i64>) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(
        state
            .reconciliation
            .get(&caller, GridId(id.into_inner()))
            .await?,
    ))
}

/// Sets the grid's reconciliation mode (audited). Needs `grid_manage`.
#[utoipa::path(put, path = "/api/v1/grids/{id}/reconciliation", tag = "commands", request_body = SetMode,
    responses((status = 200, body = GridReconciliation), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
#[put("/grids/{id}/reconciliation")]
pub async fn set_mode(
    caller: Caller,
    state: State,
    id: web::Path<i64>,
    body: web::Json<SetMode>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(
        state
            .reconciliation
            .set(&caller, GridId(id.into_inner()), body.into_inner().mode)
            .await?,
    ))
}
