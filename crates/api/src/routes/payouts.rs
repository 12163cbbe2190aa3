//! Payouts to grid owners: monthly drafts, approval and payment by provider transfer, and each
//! grid's rental terms.

use actix_web::{HttpResponse, get, post, put, web};
use kernel::{Currency, GridId, PayoutId};
use payments::payouts::{
    BankAccount, ExchangeRate, GridPayoutTerms, Month, Payout, PayoutFilter, PayoutStatus,
};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::{Paged, State, created, page};
use crate::auth::Caller;
use crate::error::{ApiResult, Problem};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub grid_id: Option<GridId>,
    pub status: Option<PayoutStatus>,
    /// `YYYY-MM`.
    pub month: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePayout {
    pub grid_id: GridId,
    /// The calendar month in the grid's timezone, `YYYY-MM`.
    #[schema(example = "2026-10")]
    pub month: String,
    /// Units of the grid's currency per unit of the rental currency (a decimal string, e.g.
    /// `"1530.5"`); required when the grid's rental is priced in another currency.
    pub exchange_rate: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovePayout {
    /// Defaults to the proposed amount; must be above zero.
    pub approved_amount_minor: Option<i64>,
    pub bank_account: BankAccount,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RentalTermsBody {
    /// Per kWp of installed PV per month, in minor units of `rental_currency`.
    pub pv_rental_minor_per_kwp_month: i64,
    /// Per kWh of installed storage per month.
    pub storage_rental_minor_per_kwh_month: i64,
    /// Defaults to the grid's currency.
    pub rental_currency: Option<Currency>,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(create)
        .service(list)
        .service(get_one)
        .service(approve)
        .service(pay)
        .service(get_terms)
        .service(put_terms);
}

/// Computes the payout draft of a grid for a month: completed energy top-ups and connection fees
/// (less refunds) minus the capacity rental at the exchange rate, the grid-support (10 %) and
/// insurance (2 %) fees on energy revenue and the processing fee (2 %) on all revenue, exact in
/// minor units. A month without top-ups is a zero-revenue payout, not an error. 201 when created;
/// 200 when an unapproved draft was recomputed; 409 once it was approved. Needs `payout_approve`.
#[utoipa::path(post, path = "/api/v1/payouts", tag = "payouts", request_body = CreatePayout,
    responses((status = 201, body = Payout), (status = 200, body = Payout), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
#[post("/payouts")]
pub async fn create(
    caller: Caller,
    state: State,
    body: web::Json<CreatePayout>,
) -> ApiResult<HttpResponse> {
    let b = body.into_inner();
    let month = Month::parse(&b.month)?;
    let rate = b
        .exchange_rate
        .as_deref()
        .map(ExchangeRate::parse)
        .transpose()?;
    let (payout, was_created) = state
        .services
        .payouts
        .draft(&caller, b.grid_id, month, rate)
        .await?;
    Ok(if was_created {
        created(payout)
    } else {
        HttpResponse::Ok().json(payout)
    })
}

/// Payouts, oldest first. Needs `money_read` (staff).
#[utoipa::path(get, path = "/api/v1/payouts", tag = "payouts", params(ListQuery),
    responses((status = 200, body = Paged<Payout>), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
#[get("/payouts")]
pub async fn list(
    caller: Caller,
    state: State,
    q: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let q = q.into_inner();
    let page = page(q.limit, q.cursor.as_deref())?;
    let filter = PayoutFilter {
        grid_id: q.grid_id,
        status: q.status,
        month: q.month.as_deref().map(Month::parse).transpose()?,
    };
    Ok(HttpResponse::Ok().json(Paged::from(
        state.services.payouts.list(&caller, filter, page).await?,
    )))
}

/// A payout with its full breakdown.
#[utoipa::path(get, path = "/api/v1/payouts/{id}", tag = "payouts",
    responses((status = 200, body = Payout), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
#[get("/payouts/{id}")]
pub async fn get_one(caller: Caller, state: State, id: web::Path<i64>) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.services.payouts.get(&caller, PayoutId(*id)).await?))
}

/// Approves a WAITING_FOR_APPROVAL payout: the amount to pay and the bank account (409 in any
/// other status). Needs `payout_approve`.
#[utoipa::path(post, path = "/api/v1/payouts/{id}/approve", tag = "payouts", request_body = ApprovePayout,
    responses((status = 200, body = Payout), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
#[post("/payouts/{id}/approve")]
pub async fn approve(
    caller: Caller,
    state: State,
    id: web::Path<i64>,
    body: web::Json<ApprovePayout>,
) -> ApiResult<HttpResponse> {
    let b = body.into_inner();
    Ok(HttpResponse::Ok().json(
        state
            .services
            .payouts
            .approve(
                &caller,
                PayoutId(*id),
                b.approved_amount_minor,
                b.bank_account,
            )
            .await?,
    ))
}

/// Pays an APPROVED (or FAILED) payout by a provider transfer. The answer shows PROCESSING until
/// the provider reports the outcome (PAID or FAILED, from its webhook), or PAID/FAILED when it
/// answered at once. 503 when no provider is configured or it cannot be reached (the payout is
/// APPROVED again; a retry reuses the transfer reference, so it cannot pay twice). Needs
/// `payout_approve`.
#[utoipa::path(post, path = "/api/v1/payouts/{id}/pay", tag = "payouts",
    responses((status = 200, body = Payout), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 503, body = Problem)))]
#[post("/payouts/{id}/pay")]
pub async fn pay(caller: Caller, state: State, id: web::Path<i64>) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.services.payouts.pay(&caller, PayoutId(*id)).await?))
}

/// The grid's payout terms: installed capacity and monthly rental. Needs `money_read`.
#[utoipa::path(get, path = "/api/v1/grids/{id}/payout-terms", tag = "payouts",
    responses((status = 200, body = GridPayoutTerms), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
#[get("/grids/{id}/payout-terms")]
pub async fn get_terms(
    caller: Caller,
    state: State,
    id: web::Path<i64>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.services.payouts.terms(&caller, GridId(*id)).await?))
}

/// Sets the grid's monthly capacity rental (audited). Needs `payout_approve`.
#[utoipa::path(put, path = "/api/v1/grids/{id}/payout-terms", tag = "payouts", request_body = RentalTermsBody,
    responses((status = 200, body = GridPayoutTerms), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
#[put("/grids/{id}/payout-terms")]
pub async fn put_terms(
    caller: Caller,
    state: State,
    id: web::Path<i64>,
    body: web::Json<RentalTermsBody>,
) -> ApiResult<HttpResponse> {
    let b = body.into_inner();
    Ok(HttpResponse::Ok().json(
        state
            .services
            .payouts
            .set_rental(
                &caller,
                GridId(*id),
                b.pv_rental_minor_per_kwp_month,
                b.storage_rental_minor_per_kwh_month,
                b.rental_currency,
            )
            .await?,
    ))
}
