use actix_web::{HttpRequest, HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use kernel::{GridId, MeterId};
use meters::{
    CommandRequest, InteractionFilter, InteractionId, InteractionStatus, InteractionType,
    InteractionView,
};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::{Paged, State, page};
use crate::auth::Caller;
use crate::error::{ApiResult, Problem};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub meter_id: Option<MeterId>,
    pub grid_id: Option<GridId>,
    pub status: Option<InteractionStatus>,
    pub kind: Option<InteractionType>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    /// Only the interactions this directive batch execution created or joined.
    pub batch_execution_id: Option<i64>,
}

#[derive(Debug, Deserialize, serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCommand {
    /// e.g. `TURN_OFF`, `TURN_ON`, `READ_CREDIT`, `SET_POWER_LIMIT`, `DELIVER_PREEXISTING_TOKEN`.
    pub kind: InteractionType,
    /// SET_POWER_LIMIT: watts.
    pub power_limit_w: Option<i32>,
    /// TOP_UP: watt-hours.
    pub energy_wh: Option<i64>,
    /// DELIVER_PREEXISTING_TOKEN: the 20-digit STS token.
    pub token: Option<String>,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(create)
        .service(list)
        .service(get_one)
        .service(delivery)
        .service(cancel);
}

/// Sends a command to a meter. Intake runs the gatekeeper (a dark grid or a gateway outage
/// SUSPENDS it, a LoRaWAN meter silent for 24 h ABORTS it), coalesces it into an identical pending
/// one (200 with that interaction) and supersedes contradicting queued ones; 201 when created.
/// Needs `meter_command` (`order_manage` for TOP_UP, `token_redeliver` for pre-existing tokens).
/// Send an `Idempotency-Key` header to make retries safe: a repeat returns the first answer.
/// Delivery to the network server is not built yet: interactions wait QUEUED.
#[utoipa::path(post, path = "/api/v1/meters/{id}/commands", tag = "commands", request_body = CreateCommand,
    responses((status = 201, body = InteractionView), (status = 200, body = InteractionView), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
#[post("/meters/{id}/commands")]
pub async fn create(
    caller: Caller,
    state: State,
    id: web::Path<i64>,
    body: web::Json<CreateCommand>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    let b = body.into_inner();
    let fingerprint = serde_json::to_value(&b).unwrap_or_default();
    let request = CommandRequest {
        kind: b.kind,
        power_limit_w: b.power_limit_w,
        energy_wh: b.energy_wh,
        token: b.token,
    };
    let meter = MeterId(*id);
    crate::idempotency::run(&state, &caller, &req, &fingerprint, || async {
        let (view, created) = state
            .services
            .commands
            .create(&caller, meter, request)
            .await?;
        let status = if created {
            actix_web::http::StatusCode::CREATED
        } else {
            actix_web::http::StatusCode::OK
        };
        Ok((status, serde_json::to_value(&view).unwrap_or_default()))
    })
    .await
}

/// Interactions (commands and their outcomes), newest last. Needs `meter_read` (staff).
#[utoipa::path(get, path = "/api/v1/interactions", tag = "commands", params(ListQuery),
    responses((status = 200, body = Paged<InteractionView>), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
#[get("/interactions")]
pub async fn list(
    caller: Caller,
    state: State,
    q: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let q = q.into_inner();
    let page = page(q.limit, q.cursor.as_deref())?;
    let filter = InteractionFilter {
        meter_id: q.meter_id,
        grid_id: q.grid_id,
        status: q.status,
        kind: q.kind,
        created_after: q.created_after,
        created_before: q.created_before,
        batch_execution_id: q.batch_execution_id.map(meters::BatchExecutionId),
    };
    Ok(HttpResponse::Ok().json(Paged::from(
        state.services.commands.list(&caller, filter, page).await?,
    )))
}

#[utoipa::path(get, path = "/api/v1/interactions/{id}", tag = "commands",
    responses((status = 200, body = InteractionView), (status = 401, body = Problem), (status = 404, body = Problem)))]
#[get("/interactions/{id}")]
pub async fn get_one(caller: Caller, state: State, id: web::Path<i64>) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(
        state
            .services
            .commands
            .get(&caller, InteractionId(*id))
            .await?,
    ))
}

/// Cancels an unfinished interaction (ABORTED); 409 when it has finished or moved on meanwhile.
#[utoipa::path(post, path = "/api/v1/interactions/{id}/cancel", tag = "commands",
    responses((status = 200, body = InteractionView), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
#[post("/interactions/{id}/cancel")]
pub async fn cancel(caller: Caller, state: State, id: web::Path<i64>) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(
        state
            .services
            .commands
            .cancel(&caller, InteractionId(*id))
            .await?,
    ))
}

/// Where the interaction's delivery stands: the stage on the wire and its deadline, attempts and
/// retries, the next attempt, the network server's queue item, the verification read, the
/// meter's answer and the history. Needs `meter_read`.
#[utoipa::path(get, path = "/api/v1/interactions/{id}/delivery", tag = "commands",
    responses((status = 200, body = meters::DeliveryStatus), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
#[get("/interactions/{id}/delivery")]
pub async fn delivery(caller: Caller, state: State, id: web::Path<i64>) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(
        state
            .deliveries
            .get(&caller, InteractionId(id.into_inner()))
            .await?,
    ))
}
