//! The provider side of a refund: whether the money of a reversed card (or mobile-money) payment
//! went back to the payer at the provider.

use actix_web::{HttpResponse, get, web};
use kernel::OrderId;
use payments::refunds::ProviderRefundRecord;

use super::State;
use crate::auth::Caller;
use crate::error::{ApiResult, Problem};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(get_one);
}

/// The provider refund of a reversing order (the answer of `POST /orders/{id}/refund` for an
/// order paid through Flutterwave): PENDING until sent, SENT with the provider's refund id, then
/// COMPLETED, or FAILED with `failure_reason`. A FAILED provider refund leaves the ledger's
/// reversal in place: an operator settles it at the provider. 404 when the order is not visible
/// or needed no provider refund (cash, agent and wallet orders). Visible to whoever sees the
/// order (staff with `money_read`, the agent or customer whose wallet it touches).
#[utoipa::path(get, path = "/api/v1/orders/{id}/provider-refund", tag = "orders",
    responses((status = 200, body = ProviderRefundRecord), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
#[get("/orders/{id}/provider-refund")]
pub async fn get_one(caller: Caller, state: State, id: web::Path<i64>) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(
        state
            .services
            .provider_refunds
            .for_order(&caller, OrderId(*id))
            .await?,
    ))
}
