//! Installing and uninstalling meters, and their commissioning runs.

use actix_web::{HttpResponse, get, post, web};
use kernel::MeterId;
use meters::{Commissioning, CommissioningId, InstallOutcome, UninstallOutcome};

use super::{Paged, State};
use crate::auth::Caller;
use crate::error::{ApiResult, Problem};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(install)
        .service(uninstall)
        .service(list_commissionings)
        .service(get_commissioning)
        .service(retry_commissioning);
}

/// Installs a meter that is assigned to a connection: opens an install session, registers a
/// LoRaWAN meter's device with the network server, and starts commissioning (CLEAR_TAMPER,
/// CLEAR_CREDIT, SET_POWER_LIMIT, READ_VOLTAGE, READ_POWER, one at a time). 201 when started;
/// 200 with the running commissioning while one runs (nothing new is started). 409 when the
/// meter is not assigned or the network server refuses the device; 503 when no network server
/// or no STS generator is configured, or the network server is down (the session is kept with
/// registration FAILED and the reason). Needs `install_manage`.
#[utoipa::path(post, path = "/api/v1/meters/{id}/install", tag = "installs",
    responses((status = 201, body = InstallOutcome), (status = 200, body = InstallOutcome), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
#[post("/meters/{id}/install")]
pub async fn install(caller: Caller, state: State, id: web::Path<i64>) -> ApiResult<HttpResponse> {
    let (outcome, started) = state
        .services
        .installs
        .install(&caller, MeterId(*id), state.devices.clone())
        .await?;
    Ok(if started {
        HttpResponse::Created().json(outcome)
    } else {
        HttpResponse::Ok().json(outcome)
    })
}

/// Uninstalls a meter: removes its device from the network server (the outcome is kept on the
/// session; a failure there does not stop the uninstall), aborts every unfinished interaction of
/// the meter, fails a running commissioning, and returns the meter to inventory. 409 when the
/// meter is not installed. Needs `install_manage` and `meter_manage`.
#[utoipa::path(post, path = "/api/v1/meters/{id}/uninstall", tag = "installs",
    responses((status = 200, body = UninstallOutcome), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
#[post("/meters/{id}/uninstall")]
pub async fn uninstall(
    caller: Caller,
    state: State,
    id: web::Path<i64>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(
        state
            .services
            .installs
            .uninstall(&caller, MeterId(*id), state.devices.clone())
            .await?,
    ))
}

/// The meter's commissionings with their steps, newest first (at most 100; `next_cursor` is
/// always null). Needs `meter_read` (staff).
#[utoipa::path(get, path = "/api/v1/meters/{id}/commissionings", tag = "installs",
    responses((status = 200, body = Paged<Commissioning>), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
#[get("/meters/{id}/commissionings")]
pub async fn list_commissionings(
    caller: Caller,
    state: State,
    id: web::Path<i64>,
) -> ApiResult<HttpResponse> {
    let items = state
        .services
        .installs
        .commissionings_of(&caller, MeterId(*id))
        .await?;
    Ok(HttpResponse::Ok().json(Paged {
        items,
        next_cursor: None,
    }))
}

/// A commissioning with its steps (interactions) in sequence order. Needs `meter_read` (staff).
#[utoipa::path(get, path = "/api/v1/commissionings/{id}", tag = "installs",
    responses((status = 200, body = Commissioning), (status = 401, body = Problem), (status = 404, body = Problem)))]
#[get("/commissionings/{id}")]
pub async fn get_commissioning(
    caller: Caller,
    state: State,
    id: web::Path<i64>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(
        state
            .services
            .installs
            .commissioning(&caller, CommissioningId(*id))
            .await?,
    ))
}

/// Starts a fresh commissioning in place of a FAILED one, or of a PENDING one that stalled (its
/// pending steps are aborted and it is failed first); the new one's `retry_of` names it, and its
/// first step passes the gatekeeper's wait for a silent meter. 409 for PROCESSING or SUCCESSFUL,
/// or when the meter is no longer installed. Needs `install_manage`.
#[utoipa::path(post, path = "/api/v1/commissionings/{id}/retry", tag = "installs",
    responses((status = 201, body = Commissioning), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 503, body = Problem)))]
#[post("/commissionings/{id}/retry")]
pub async fn retry_commissioning(
    caller: Caller,
    state: State,
    id: web::Path<i64>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Created().json(
        state
            .services
            .installs
            .retry(&caller, CommissioningId(*id))
            .await?,
    ))
}
