use actix_web::{HttpResponse, get, patch, post, put, web};
use chrono::{Duration, Utc};
use grids::meters::{Assignment, Meter, MeterChanges, MeterFilter, MeterStateReport, NewMeter};
use grids::vocab::{CommunicationProtocol, MeterPhase, MeterSystem, MeterType};
use kernel::{
    ConnectionId, CustomerId, DcuId, DomainError, GridId, MeterId, OrganizationId, PoleId,
};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::dcus::inserted;
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
    pub connection_id: Option<ConnectionId>,
    pub customer_id: Option<CustomerId>,
    pub dcu_id: Option<DcuId>,
    pub meter_type: Option<MeterType>,
    pub meter_phase: Option<MeterPhase>,
    pub communication_protocol: Option<CommunicationProtocol>,
    /// `false`: meters in inventory only.
    pub assigned: Option<bool>,
    /// `true`: seen within `online_window_minutes`; `false`: not seen in it.
    pub online: Option<bool>,
    /// Default 60.
    pub online_window_minutes: Option<i64>,
    /// Serial, or the customer's name or phone.
    pub search: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterMeter {
    pub external_system: MeterSystem,
    /// The serial number.
    pub external_reference: String,
    /// LoRaWAN DevEUI (16 hex digits): uplinks from the network server are matched by it.
    pub lorawan_dev_eui: Option<String>,
    /// STS decoder key, needed to generate tokens; stored, never shown again.
    pub decoder_key: Option<String>,
    pub communication_protocol: Option<CommunicationProtocol>,
    pub meter_type: Option<MeterType>,
    pub meter_phase: Option<MeterPhase>,
    pub version: Option<String>,
    pub nickname: Option<String>,
    pub is_cabin_meter: Option<bool>,
    /// Platform SUPERADMINs may register into another organization.
    pub organization_id: Option<OrganizationId>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMeter {
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub lorawan_dev_eui: Option<Option<String>>,
    /// STS decoder key (write-only); `null` removes it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub decoder_key: Option<Option<String>>,
    pub meter_type: Option<MeterType>,
    pub meter_phase: Option<MeterPhase>,
    pub communication_protocol: Option<CommunicationProtocol>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub version: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub nickname: Option<Option<String>>,
    pub is_cabin_meter: Option<bool>,
    pub hps_mode_power_limit_w: Option<i32>,
    /// `true`: batches and the reconciler leave the meter alone (operators drive it by hand).
    pub manual_mode: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignMeter {
    pub connection_id: ConnectionId,
    pub pole_id: Option<PoleId>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MeterStates {
    /// Up to 1000 reports, each meter once.
    pub states: Vec<MeterStateReport>,
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

/// Meters with their placement and observed state. Needs `meter_read`; agents see their grid's
/// meters, customers their own.
#[utoipa::path(get, path = "/api/v1/meters", tag = "meters", params(ListQuery),
    responses((status = 200, body = Paged<Meter>), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
#[get("/meters")]
pub async fn list(
    caller: Caller,
    state: State,
    q: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let q = q.into_inner();
    let page = page(q.limit, q.cursor.as_deref())?;
    let window = q.online_window_minutes.unwrap_or(60);
    if !(1..=10_080).contains(&window) {
        return Err(
            DomainError::invalid("online_window_minutes", "must be between 1 and 10080").into(),
        );
    }
    let filter = MeterFilter {
        grid_id: q.grid_id,
        connection_id: q.connection_id,
        customer_id: q.customer_id,
        dcu_id: q.dcu_id,
        meter_type: q.meter_type,
        meter_phase: q.meter_phase,
        communication_protocol: q.communication_protocol,
        assigned: q.assigned,
        seen_since: q
            .online
            .map(|o| (o, Utc::now() - Duration::minutes(window))),
        search: q.search,
    };
    Ok(HttpResponse::Ok().json(Paged::from(
        state.services.meters.list(&caller, filter, page).await?,
    )))
}

/// Registers a meter into inventory. Idempotent on (external_system, serial): 201 when created,
/// 200 with the existing meter otherwise; another organization's serial is 409. Needs `meter_manage`.
#[utoipa::path(post, path = "/api/v1/meters", tag = "meters", request_body = RegisterMeter,
    responses((status = 201, body = Meter), (status = 200, body = Meter), (status = 401, body = Problem), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
#[post("/meters")]
pub async fn register(
    caller: Caller,
    state: State,
    body: web::Json<RegisterMeter>,
) -> ApiResult<HttpResponse> {
    let b = body.into_inner();
    let new = NewMeter {
        external_system: b.external_system,
        external_reference: b.external_reference,
        lorawan_dev_eui: b.lorawan_dev_eui,
        decoder_key: b.decoder_key,
        communication_protocol: b
            .communication_protocol
            .unwrap_or(CommunicationProtocol::CalinLorawan),
        meter_type: b.meter_type.unwrap_or(MeterType::Hps),
        meter_phase: b.meter_phase.unwrap_or(MeterPhase::SinglePhase),
        version: b.version,
        nickname: b.nickname,
        is_cabin_meter: b.is_cabin_meter.unwrap_or(false),
    };
    Ok(inserted(
        state
            .services
            .meters
            .insert(&caller, b.organization_id, new)
            .await?,
    ))
}

/// Bulk observed-state report from machine clients; fields left out keep their value. Needs `meter_manage`.
#[utoipa::path(put, path = "/api/v1/meters/state", tag = "meters", request_body = MeterStates,
    responses((status = 200, body = Vec<Meter>), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
#[put("/meters/state")]
pub async fn report_states(
    caller: Caller,
    state: State,
    body: web::Json<MeterStates>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(
        state
            .services
            .meters
            .report_states(&caller, body.into_inner().states)
            .await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/meters/{id}", tag = "meters",
    responses((status = 200, body = Meter), (status = 401, body = Problem), (status = 404, body = Problem)))]
#[get("/meters/{id}")]
pub async fn get_one(caller: Caller, state: State, id: web::Path<i64>) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.services.meters.get(&caller, MeterId(*id)).await?))
}

/// Type, phase and protocol change only while the meter is in inventory (409 otherwise).
#[utoipa::path(patch, path = "/api/v1/meters/{id}", tag = "meters", request_body = UpdateMeter,
    responses((status = 200, body = Meter), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
#[patch("/meters/{id}")]
pub async fn update(
    caller: Caller,
    state: State,
    id: web::Path<i64>,
    body: web::Json<UpdateMeter>,
) -> ApiResult<HttpResponse> {
    let b = body.into_inner();
    let changes = MeterChanges {
        lorawan_dev_eui: b.lorawan_dev_eui,
        decoder_key: b.decoder_key,
        meter_type: b.meter_type,
        meter_phase: b.meter_phase,
        communication_protocol: b.communication_protocol,
        version: b.version,
        nickname: b.nickname,
        is_cabin_meter: b.is_cabin_meter,
        hps_mode_power_limit_w: b.hps_mode_power_limit_w,
        manual_mode: b.manual_mode,
    };
    Ok(HttpResponse::Ok().json(
        state
            .services
            .meters
            .update(&caller, MeterId(*id), changes)
            .await?,
    ))
}

/// Places a meter on a connection (and pole). The grid and organization follow the connection;
/// the gateway is the grid's fullest gateway of the meter's protocol with room. 409 when the meter
/// is assigned, the connection already has a meter of this type, or no gateway has room.
#[utoipa::path(post, path = "/api/v1/meters/{id}/assign", tag = "meters", request_body = AssignMeter,
    responses((status = 200, body = Meter), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
#[post("/meters/{id}/assign")]
pub async fn assign(
    caller: Caller,
    state: State,
    id: web::Path<i64>,
    body: web::Json<AssignMeter>,
) -> ApiResult<HttpResponse> {
    let b = body.into_inner();
    let a = Assignment {
        connection_id: b.connection_id,
        pole_id: b.pole_id,
    };
    Ok(HttpResponse::Ok().json(
        state
            .services
            .meters
            .assign(&caller, MeterId(*id), a)
            .await?,
    ))
}

/// Returns the meter to inventory: connection, pole, gateway and grid are cleared.
#[utoipa::path(post, path = "/api/v1/meters/{id}/unassign", tag = "meters",
    responses((status = 200, body = Meter), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
#[post("/meters/{id}/unassign")]
pub async fn unassign(caller: Caller, state: State, id: web::Path<i64>) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(
        state
            .services
            .meters
            .unassign(&caller, MeterId(*id))
            .await?,
    ))
}
