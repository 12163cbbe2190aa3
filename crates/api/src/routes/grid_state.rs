use actix_web::web::Bytes;
use actix_web::{HttpResponse, get, put, web};
use grids::state::{Connectivity, EXPORT_HEADER, GridState, GridStateChange};
use kernel::GridId;
use serde::Deserialize;
use utoipa::IntoParams;

use super::State;
use crate::auth::Caller;
use crate::error::{ApiResult, Problem};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ConnectivityQuery {
    /// Window in minutes, 1 to 10080 (default 60).
    pub minutes: Option<i64>,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(get_state)
        .service(put_state)
        .service(connectivity)
        .service(export);
}

/// The grid's live state: energised (HPS), full service, and which gateways are up. Needs `grid_read`.
#[utoipa::path(get, path = "/api/v1/grids/{id}/state", tag = "grids",
    responses((status = 200, body = GridState), (status = 401, body = Problem), (status = 404, body = Problem)))]
#[get("/grids/{id}/state")]
pub async fn get_state(
    caller: Caller,
    state: State,
    id: web::Path<i64>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(
        state
            .services
            .grid_state
            .state(&caller, GridId(*id))
            .await?,
    ))
}

/// Machine clients report energy state. Each `_updated_at` records when the value last changed.
/// Needs `infrastructure_manage`. Subscribers of the grid receive a `grid` event.
#[utoipa::path(put, path = "/api/v1/grids/{id}/state", tag = "grids", request_body = GridStateChange,
    responses((status = 200, body = GridState), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
#[put("/grids/{id}/state")]
pub async fn put_state(
    caller: Caller,
    state: State,
    id: web::Path<i64>,
    body: web::Json<GridStateChange>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(
        state
            .services
            .grid_state
            .change_state(&caller, GridId(*id), body.into_inner())
            .await?,
    ))
}

/// The share of the grid's meters seen in the last `minutes`, and its gateways online and offline.
/// Needs `infrastructure_read`.
#[utoipa::path(get, path = "/api/v1/grids/{id}/connectivity", tag = "grids", params(ConnectivityQuery),
    responses((status = 200, body = Connectivity), (status = 401, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
#[get("/grids/{id}/connectivity")]
pub async fn connectivity(
    caller: Caller,
    state: State,
    id: web::Path<i64>,
    q: web::Query<ConnectivityQuery>,
) -> ApiResult<HttpResponse> {
    let minutes = q.minutes.unwrap_or(60);
    Ok(HttpResponse::Ok().json(
        state
            .services
            .grid_state
            .connectivity(&caller, GridId(*id), minutes)
            .await?,
    ))
}

const EXPORT_CHUNK: i64 = 500;

fn encode(rows: &[Vec<String>]) -> Result<Bytes, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.write_record(r)?;
    }
    w.into_inner()
        .map(Bytes::from)
        .map_err(|e| csv::Error::from(e.into_error()))
}

/// Customers, connections and meters of the grid as CSV (RFC 4180 quoting), one line per
/// connection and meter. Streamed page by page: memory stays flat however large the grid.
/// Needs `connection_read` and `customer_read`.
#[utoipa::path(get, path = "/api/v1/grids/{id}/connections.csv", tag = "grids",
    responses((status = 200, content_type = "text/csv"), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
#[get("/grids/{id}/connections.csv")]
pub async fn export(caller: Caller, state: State, id: web::Path<i64>) -> ApiResult<HttpResponse> {
    let grid = GridId(*id);
    let scope = state
        .services
        .grid_state
        .export_allowed(&caller, grid)
        .await?;
    let service = state.services.grid_state.clone();
    let header: Vec<String> = EXPORT_HEADER.iter().map(|h| (*h).to_owned()).collect();
    let first = encode(&[header]).map_err(|e| kernel::DomainError::Internal(e.to_string()))?;
    // State: the position after the last line sent, or None when done.
    let pages = futures_util::stream::unfold(Some((0i64, 0i64)), move |after| {
        let service = service.clone();
        async move {
            let after = after?;
            match service.export_page(scope, grid, after, EXPORT_CHUNK).await {
                Ok(rows) if rows.is_empty() => None,
                Ok(rows) => {
                    let next = rows.last().map(|r| (r.connection_id, r.meter_id));
                    let done = (rows.len() as i64) < EXPORT_CHUNK;
                    let lines: Vec<Vec<String>> = rows.into_iter().map(|r| r.fields).collect();
                    match encode(&lines) {
                        Ok(bytes) => Some((
                            Ok::<_, actix_web::Error>(bytes),
                            if done { None } else { next },
                        )),
                        Err(e) => Some((
                            Err(actix_web::error::ErrorInternalServerError(e.to_string())),
                            None,
                        )),
                    }
                }
                Err(e) => {
                    // The status line is gone already; end the body and leave a trace.
                    tracing::error!(grid = %grid, error = %e, "connections export failed mid-stream");
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
        futures_util::stream::once(async move { Ok::<_, actix_web::Error>(first) }).chain(pages);
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"grid-{grid}-connections.csv\""),
        ))
        .streaming(body))
}

use futures_util::StreamExt;
