use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use kernel::{Currency, GridId, OrderId, WalletId};
use payments::{
    Money, Order, OrderFilter, OrderStatus, OrderType, RevenueLine, Sender, TransferDraft,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{Paged, State, page};
use crate::auth::Caller;
use crate::error::{ApiResult, Problem};

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrder {
    /// The wallet money leaves. Exactly one of `sender_wallet_id` and `sender_system`.
    pub sender_wallet_id: Option<WalletId>,
    /// Money entering from outside through this provider's system wallet (e.g. `CASH`); only
    /// a SUPERADMIN may.
    pub sender_system: Option<String>,
    pub receiver_wallet_id: WalletId,
    /// Minor units (kobo, cents), greater than zero.
    pub amount: i64,
    /// Must be both wallets' currency.
    pub currency: Currency,
    /// Where the order came from (`AYRTON`, `TELEGRAM`, `USSD`...), for reporting.
    pub payment_channel: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundOrder {
    /// Why (kept in the audit trail).
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    /// Orders sending from or receiving into this wallet.
    pub wallet_id: Option<WalletId>,
    pub status: Option<OrderStatus>,
    pub order_type: Option<OrderType>,
    pub grid_id: Option<GridId>,
    /// Created at or after (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Created before (RFC 3339).
    pub to: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RevenueQuery {
    /// One grid; all of the organization's grids when absent.
    pub grid_id: Option<GridId>,
    /// Period start, inclusive (RFC 3339).
    pub from: DateTime<Utc>,
    /// Period end, exclusive (RFC 3339).
    pub to: DateTime<Utc>,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(create)
        .service(list)
        .service(get_one)
        .service(refund)
        .service(revenue);
}

/// Moves money between two wallets now, in one database transaction: agent → meter top-ups,
/// organization → agent float, connection fee payments. 201 with the order, COMPLETED, or
/// FAILED with `failure_reason` when the sender lacks the funds (nothing moved). An agent
/// (`top_up_sell`) spends only from its own wallet into meters and connections of its grid; a
/// customer (`pay_own`) pays only into its own meters and connections; `order_manage` moves the
/// organization's money. Send an `Idempotency-Key` header to make retries safe.
#[utoipa::path(post, path = "/api/v1/orders", tag = "orders", request_body = CreateOrder,
    responses((status = 201, body = Order), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
#[post("/orders")]
pub async fn create(
    caller: Caller,
    state: State,
    body: web::Json<CreateOrder>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    let b = body.into_inner();
    let fingerprint = serde_json::to_value(&b).unwrap_or_default();
    let sender = match (b.sender_wallet_id, b.sender_system) {
        (Some(w), None) => Sender::Wallet(w),
        (None, Some(key)) => Sender::System(key),
        _ => {
            return Err(kernel::DomainError::invalid(
                "sender_wallet_id",
                "give exactly one of sender_wallet_id and sender_system",
            )
            .into());
        }
    };
    let idempotency_key = req
        .headers()
        .get(crate::idempotency::HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_owned());
    let draft = TransferDraft {
        sender,
        receiver: b.receiver_wallet_id,
        amount: Money::new(b.amount, b.currency),
        author_account_id: None,
        author_api_key_id: None,
        idempotency_key,
        payment_channel: b.payment_channel,
    };
    crate::idempotency::run(&state, &caller, &req, &fingerprint, || async {
        let order = state.services.money.transfer(&caller, draft).await?;
        Ok((
            StatusCode::CREATED,
            serde_json::to_value(&order).unwrap_or_default(),
        ))
    })
    .await
}

/// Refunds a COMPLETED order with the reversing order (receiver → sender, same amount), at most
/// once. 201 with the refund order; FAILED with the reason when the receiver no longer holds the
/// money. Needs `refund_manage`. Accepts `Idempotency-Key`.
#[utoipa::path(post, path = "/api/v1/orders/{id}/refund", tag = "orders", request_body = RefundOrder,
    responses((status = 201, body = Order), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
#[post("/orders/{id}/refund")]
pub async fn refund(
    caller: Caller,
    state: State,
    id: web::Path<i64>,
    body: web::Json<RefundOrder>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    let b = body.into_inner();
    let fingerprint = serde_json::to_value(&b).unwrap_or_default();
    let order = OrderId(*id);
    crate::idempotency::run(&state, &caller, &req, &fingerprint, || async {
        let refund = state
            .services
            .money
            .refund(&caller, order, b.reason)
            .await?;
        Ok((
            StatusCode::CREATED,
            serde_json::to_value(&refund).unwrap_or_default(),
        ))
    })
    .await
}

/// Orders, oldest first, filterable by wallet, status, type, grid and creation time. Staff need
/// `money_read`; an agent sees orders touching its wallet, a customer those touching its wallets.
#[utoipa::path(get, path = "/api/v1/orders", tag = "orders", params(ListQuery),
    responses((status = 200, body = Paged<Order>), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
#[get("/orders")]
pub async fn list(
    caller: Caller,
    state: State,
    q: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let q = q.into_inner();
    let page = page(q.limit, q.cursor.as_deref())?;
    let filter = OrderFilter {
        wallet_id: q.wallet_id,
        status: q.status,
        order_type: q.order_type,
        grid_id: q.grid_id,
        created_from: q.from,
        created_to: q.to,
        ..OrderFilter::default()
    };
    Ok(HttpResponse::Ok().json(Paged::from(
        state.services.money.orders(&caller, filter, page).await?,
    )))
}

#[utoipa::path(get, path = "/api/v1/orders/{id}", tag = "orders",
    responses((status = 200, body = Order), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
#[get("/orders/{id}")]
pub async fn get_one(caller: Caller, state: State, id: web::Path<i64>) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.services.money.order(&caller, OrderId(*id)).await?))
}

/// Completed energy top-ups and connection payments per grid and currency in [from, to), minus
/// refunds; orders hidden from reporting are left out. Staff with `money_read`.
#[utoipa::path(get, path = "/api/v1/revenue", tag = "orders", params(RevenueQuery),
    responses((status = 200, body = Vec<RevenueLine>), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
#[get("/revenue")]
pub async fn revenue(
    caller: Caller,
    state: State,
    q: web::Query<RevenueQuery>,
) -> ApiResult<HttpResponse> {
    let q = q.into_inner();
    Ok(HttpResponse::Ok().json(
        state
            .services
            .money
            .revenue(&caller, q.grid_id, q.from, q.to)
            .await?,
    ))
}
