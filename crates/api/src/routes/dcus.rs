use actix_web::{HttpResponse, get, patch, post, put, web};
use grids::gateways::{Gateway, GatewayChanges, GatewayFilter, GatewayState, Inserted, NewGateway};
use grids::vocab::{CommunicationProtocol, GatewaySystem};
use kernel::{DcuId, GridId, OrganizationId};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::{Paged, State, nullable, page};
use crate::auth::Caller;
use crate::error::{ApiResult, Problem};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub grid_id: Option<GridId>,
    /// `false`: only gateways in inventory.
    pub assigned: Option<bool>,
    pub is_online: Option<bool>,
    pub communication_protocol: Option<CommunicationProtocol>,
    /// Matches the external reference or nickname.
    pub search: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterGateway {
    pub external_system: GatewaySystem,
    pub external_reference: String,
    pub communication_protocol: CommunicationProtocol,
    pub nickname: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    /// Platform SUPERADMINs may register into another organization.
    pub organization_id: Option<OrganizationId>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateGateway {
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub nickname: Option<Option<String>>,
    pub communication_protocol: Option<CommunicationProtocol>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<f64>, nullable)]
    pub latitude: Option<Option<f64>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<f64>, nullable)]
    pub longitude: Option<Option<f64>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignGateway {
    pub grid_id: GridId,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewayStates {
    /// Up to 1000 reports, each gateway once.
    pub states: Vec<GatewayState>,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(list)
        .service(register)
        .service(report_states)
        .service(get_one)
        .service(update)
        .service(assign)
        .service(unassign);
}

/// Gateways (CALIN DCUs and LoRaWAN gateways). Needs `infrastructure_read`.
#[utoipa::path(get, path = "/api/v1/dcus", tag = "gateways", params(ListQuery),
    responses((status = 200, body = Paged<Gateway>), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
#[get("/dcus")]
pub async fn list(
    caller: Caller,
    state: State,
    q: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let q = q.into_inner();
    let page = page(q.limit, q.cursor.as_deref())?;
    let filter = GatewayFilter {
        grid_id: q.grid_id,
        assigned: q.assigned,
        is_online: q.is_online,
        communication_protocol: q.communication_protocol,
        search: q.search,
    };
    Ok(HttpResponse::Ok().json(Paged::from(
        state.services.gateways.list(&caller, filter, page).await?,
    )))
}

pub(crate) fn inserted<T: serde::Serialize>(i: Inserted<T>) -> HttpResponse {
    if i.created {
        HttpResponse::Created().json(i.value)
    } else {
        HttpResponse::Ok().json(i.value)
    }
}

/// Registers a gateway into inventory. Idempotent on (external_system, external_reference):
/// 201 when created, 200 with the existing gateway otherwise. Needs `infrastructure_manage`.
#[utoipa::path(post, path = "/api/v1/dcus", tag = "gateways", request_body = RegisterGateway,
    responses((status = 201, body = Gateway), (status = 200, body = Gateway), (status = 401, body = Problem), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
#[post("/dcus")]
pub async fn register(
    caller: Caller,
    state: State,
    body: web::Json<RegisterGateway>,
) -> ApiResult<HttpResponse> {
    let b = body.into_inner();
    let new = NewGateway {
        external_system: b.external_system,
        external_reference: b.external_reference,
        communication_protocol: b.communication_protocol,
        nickname: b.nickname,
        latitude: b.latitude,
        longitude: b.longitude,
    };
    Ok(inserted(
        state
            .services
            .gateways
            .insert(&caller, b.organization_id, new)
            .await?,
    ))
}

/// Bulk state report from machine clients (online, last seen, signal). Needs `infrastructure_manage`.
#[utoipa::path(put, path = "/api/v1/dcus/state", tag = "gateways", request_body = GatewayStates,
    responses((status = 200, body = Vec<Gateway>), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
#[put("/dcus/state")]
pub async fn report_states(
    caller: Caller,
    state: State,
    body: web::Json<GatewayStates>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(
        state
            .services
            .gateways
            .report_states(&caller, body.into_inner().states)
            .await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/dcus/{id}", tag = "gateways",
    responses((status = 200, body = Gateway), (status = 401, body = Problem), (status = 404, body = Problem)))]
#[get("/dcus/{id}")]
pub async fn get_one(caller: Caller, state: State, id: web::Path<i64>) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.services.gateways.get(&caller, DcuId(*id)).await?))
}

#[utoipa::path(patch, path = "/api/v1/dcus/{id}", tag = "gateways", request_body = UpdateGateway,
    responses((status = 200, body = Gateway), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
#[patch("/dcus/{id}")]
pub async fn update(
    caller: Caller,
    state: State,
    id: web::Path<i64>,
    body: web::Json<UpdateGateway>,
) -> ApiResult<HttpResponse> {
    let b = body.into_inner();
    let changes = GatewayChanges {
        nickname: b.nickname,
        communication_protocol: b.communication_protocol,
        latitude: b.latitude,
        longitude: b.longitude,
    };
    Ok(HttpResponse::Ok().json(
        state
            .services
            .gateways
            .update(&caller, DcuId(*id), changes)
            .await?,
    ))
}

/// Puts a gateway on a grid of its organization. 409 while meters on another grid use it.
#[utoipa::path(post, path = "/api/v1/dcus/{id}/assign", tag = "gateways", request_body = AssignGateway,
    responses((status = 200, body = Gateway), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
#[post("/dcus/{id}/assign")]
pub async fn assign(
    caller: Caller,
    state: State,
    id: web::Path<i64>,
    body: web::Json<AssignGateway>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(
        state
            .services
            .gateways
            .assign(&caller, DcuId(*id), body.grid_id)
            .await?,
    ))
}

/// Returns a gateway to inventory; refused with 409 while meters still use it.
#[utoipa::path(post, path = "/api/v1/dcus/{id}/unassign", tag = "gateways",
    responses((status = 200, body = Gateway), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
#[post("/dcus/{id}/unassign")]
pub async fn unassign(caller: Caller, state: State, id: web::Path<i64>) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(
        state
            .services
            .gateways
            .unassign(&caller, DcuId(*id))
            .await?,
    ))
}
