use actix_web::web::Bytes;
use actix_web::{HttpResponse, get, web};
use futures_util::StreamExt;
use kernel::{Currency, DomainError, PageRequest, WalletId};
use payments::{StatementLine, Wallet, WalletFilter};
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
    /// `ORGANIZATION`, `AGENT`, `CUSTOMER`, `METER`, `CONNECTION` or `SYSTEM`.
    pub owner_type: Option<String>,
    /// The owner's id (an organization, agent, customer, meter or connection id).
    pub owner_id: Option<i64>,
    pub currency: Option<Currency>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StatementQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

const OWNER_TYPES: [&str; 6] = [
    "ORGANIZATION",
    "AGENT",
    "CUSTOMER",
    "METER",
    "CONNECTION",
    "SYSTEM",
];

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(list)
        .service(statement_csv)
        .service(statement)
        .service(get_one);
}

/// Wallets, filterable by owner. Staff need `money_read` and see the organization's wallets
/// (system wallets only for platform SUPERADMINs); an agent sees its own wallet, a customer its
/// own, its meters' and its connections'.
#[utoipa::path(get, path = "/api/v1/wallets", tag = "wallets", params(ListQuery),
    responses((status = 200, body = Paged<Wallet>), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
#[get("/wallets")]
pub async fn list(
    caller: Caller,
    state: State,
    q: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let q = q.into_inner();
    let page = page(q.limit, q.cursor.as_deref())?;
    if let Some(t) = &q.owner_type
        && !OWNER_TYPES.contains(&t.as_str())
    {
        return Err(DomainError::invalid(
            "owner_type",
            "must be ORGANIZATION, AGENT, CUSTOMER, METER, CONNECTION or SYSTEM",
        )
        .into());
    }
    let filter = WalletFilter {
        owner_type: q.owner_type,
        owner_id: q.owner_id,
        currency: q.currency,
        ..WalletFilter::default()
    };
    Ok(HttpResponse::Ok().json(Paged::from(
        state.services.money.wallets(&caller, filter, page).await?,
    )))
}

/// One wallet with its cached balance (always equal to the sum of its entries).
#[utoipa::path(get, path = "/api/v1/wallets/{id}", tag = "wallets",
    responses((status = 200, body = Wallet), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
#[get("/wallets/{id}")]
pub async fn get_one(caller: Caller, state: State, id: web::Path<i64>) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.services.money.wallet(&caller, WalletId(*id)).await?))
}

/// The wallet's ledger entries, oldest first, each with the balance right after it.
#[utoipa::path(get, path = "/api/v1/wallets/{id}/statement", tag = "wallets", params(StatementQuery),
    responses((status = 200, body = Paged<StatementLine>), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
#[get("/wallets/{id}/statement")]
pub async fn statement(
    caller: Caller,
    state: State,
    id: web::Path<i64>,
    q: web::Query<StatementQuery>,
) -> ApiResult<HttpResponse> {
    let q = q.into_inner();
    let page = page(q.limit, q.cursor.as_deref())?;
    Ok(HttpResponse::Ok().json(Paged::from(
        state
            .services
            .money
            .statement(&caller, WalletId(*id), page)
            .await?,
    )))
}

const CSV_HEADER: [&str; 9] = [
    "entry_id",
    "created_at",
    "order_id",
    "transaction_id",
    "kind",
    "currency",
    "amount_minor",
    "balance_after_minor",
    "counterparty_wallet_id",
];
const CSV_CHUNK: i64 = 500;

fn encode(lines: &[StatementLine], header: bool) -> Result<Bytes, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    if header {
        w.write_record(CSV_HEADER)?;
    }
    for l in lines {
        w.write_record([
            l.entry_id.to_string(),
            l.created_at.to_rfc3339(),
            l.order_id.to_string(),
            l.transaction_id.to_string(),
            l.kind.clone(),
            l.currency.to_string(),
            l.amount.to_string(),
            l.balance_after.to_string(),
            l.counterparty_wallet_id
                .map(|w| w.to_string())
                .unwrap_or_default(),
        ])?;
    }
    w.into_inner()
        .map(Bytes::from)
        .map_err(|e| csv::Error::from(e.into_error()))
}

/// The whole statement as CSV, streamed page by page (memory stays flat for any length).
#[utoipa::path(get, path = "/api/v1/wallets/{id}/statement.csv", tag = "wallets",
    responses((status = 200, content_type = "text/csv"), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
#[get("/wallets/{id}/statement.csv")]
pub async fn statement_csv(
    caller: Caller,
    state: State,
    id: web::Path<i64>,
) -> ApiResult<HttpResponse> {
    let wallet = WalletId(*id);
    let first_page = PageRequest {
        limit: CSV_CHUNK,
        after_id: None,
    };
    // The first page is read before answering, so 403/404 are proper errors.
    let first = state
        .services
        .money
        .statement(&caller, wallet, first_page)
        .await?;
    let head = encode(&first.items, true).map_err(|e| DomainError::Internal(e.to_string()))?;
    let money = state.services.money.clone();
    let who = caller.0.clone();
    let after = first
        .items
        .last()
        .map(|l| l.entry_id)
        .filter(|_| first.next_cursor.is_some());
    let pages = futures_util::stream::unfold(after, move |after| {
        let money = money.clone();
        let who = who.clone();
        async move {
            let after = after?;
            let req = PageRequest {
                limit: CSV_CHUNK,
                after_id: Some(after),
            };
            match money.statement(&who, wallet, req).await {
                Ok(p) => {
                    let next = p
                        .items
                        .last()
                        .map(|l| l.entry_id)
                        .filter(|_| p.next_cursor.is_some());
                    match encode(&p.items, false) {
                        Ok(bytes) => Some((Ok::<_, actix_web::Error>(bytes), next)),
                        Err(e) => Some((
                            Err(actix_web::error::ErrorInternalServerError(e.to_string())),
                            None,
                        )),
                    }
                }
                Err(e) => {
                    // The status line is gone already; end the body and leave a trace.
                    tracing::error!(wallet = %wallet, error = %e, "statement export failed mid-stream");
                    metrics::counter!("tiamat_export_errors_total").increment(1);
                    Some((
                        Err(actix_web::error::ErrorInternalServerError("export failed")),
                        None,
                    ))
                }
            }
        }
    });
    let body =
        futures_util::stream::once(async move { Ok::<_, actix_web::Error>(head) }).chain(pages);
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"wallet-{wallet}-statement.csv\""),
        ))
        .streaming(body))
}
