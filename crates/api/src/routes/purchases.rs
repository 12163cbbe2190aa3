//! Meter credit purchases: what each completed top-up bought and whether its token arrived, with
//! the operator's remedies (re-deliver, refund).

use actix_web::{HttpResponse, get, post, put, web};
use chrono::{DateTime, Utc};
use kernel::{GridId, MeterId, OrderId};
use payments::purchase::{Purchase, PurchaseFilter, PurchaseId, PurchaseStatus};
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
    pub status: Option<PurchaseStatus>,
    pub meter_id: Option<MeterId>,
    pub grid_id: Option<GridId>,
    pub order_id: Option<OrderId>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MeterTariff {
    /// Minor units per kWh; `null` to sell at the grid's HPS/FS tariff again.
    pub tariff_minor_per_kwh: Option<i64>,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(list)
        .service(get_one)
        .service(redeliver)
        .service(refund)
        .service(set_meter_tariff);
}

/// Purchases, oldest first. Needs `money_read` (staff).
#[utoipa::path(get, path = "/api/v1/purchases", tag = "purchases", params(ListQuery),
    responses((status = 200, body = Paged<Purchase>), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
#[get("/purchases")]
pub async fn list(
    caller: Caller,
    state: State,
    q: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let q = q.into_inner();
    let page = page(q.limit, q.cursor.as_deref())?;
    let filter = PurchaseFilter {
        status: q.status,
        meter_id: q.meter_id,
        grid_id: q.grid_id,
        order_id: q.order_id,
        created_after: q.created_after,
        created_before: q.created_before,
    };
    Ok(HttpResponse::Ok().json(Paged::from(
        state.services.purchases.list(&caller, filter, page).await?,
    )))
}

/// A purchase: energy, tariff, status, failure reason and the TOP_UP carrying its token.
#[utoipa::path(get, path = "/api/v1/purchases/{id}", tag = "purchases",
    responses((status = 200, body = Purchase), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
#[get("/purchases/{id}")]
pub async fn get_one(caller: Caller, state: State, id: web::Path<i64>) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(
        state
            .services
            .purchases
            .get(&caller, PurchaseId(*id))
            .await?,
    ))
}

/// Re-delivers a FAILED purchase: a new TOP_UP with a fresh STS token and the same energy (409
/// unless FAILED). When the token still cannot be generated the answer shows the purchase FAILED
/// again with the new reason. Needs `token_redeliver`.
#[utoipa::path(post, path = "/api/v1/purchases/{id}/redeliver", tag = "purchases",
    responses((status = 200, body = Purchase), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
#[post("/purchases/{id}/redeliver")]
pub async fn redeliver(
    caller: Caller,
    state: State,
    id: web::Path<i64>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(
        state
            .services
            .purchases
            .redeliver(&caller, PurchaseId(*id))
            .await?,
    ))
}

/// Refunds a FAILED purchase: the ledger's reversing order moves the money from the meter's
/// wallet back to the payer's, and the purchase becomes REFUNDED (409 unless FAILED). Needs
/// `refund_manage`.
#[utoipa::path(post, path = "/api/v1/purchases/{id}/refund", tag = "purchases",
    responses((status = 200, body = Purchase), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
#[post("/purchases/{id}/refund")]
pub async fn refund(caller: Caller, state: State, id: web::Path<i64>) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(
        state
            .services
            .purchases
            .refund(&caller, PurchaseId(*id))
            .await?,
    ))
}

/// Sets the meter's own tariff (energy for its top-ups is priced at it instead of its grid's HPS
/// or FS tariff); `null` clears it. Needs `grid_manage`. Answers 204.
#[utoipa::path(put, path = "/api/v1/meters/{id}/tariff", tag = "purchases", request_body = MeterTariff,
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
#[put("/meters/{id}/tariff")]
pub async fn set_meter_tariff(
    caller: Caller,
    state: State,
    id: web::Path<i64>,
    body: web::Json<MeterTariff>,
) -> ApiResult<HttpResponse> {
    state
        .services
        .purchases
        .set_meter_tariff(
            &caller,
            MeterId(*id),
            body.into_inner().tariff_minor_per_kwh,
        )
        .await?;
    Ok(super::no_content())
}
