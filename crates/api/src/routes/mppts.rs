use actix_web::{HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Utc};
use grids::site::{Mppt, MpptFields, SiteFilter};
use grids::vocab::{MpptSystem, MpptType};
use kernel::{DomainError, GridId, MpptId};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::{Paged, State, created, no_content, nullable, page};
use crate::auth::Caller;
use crate::error::{ApiResult, Problem};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub grid_id: Option<GridId>,
    pub search: Option<String>,
}

/// MPPT fields; `grid_id` is required on create and fixed afterwards.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MpptBody {
    pub grid_id: Option<GridId>,
    pub external_system: Option<MpptSystem>,
    pub external_reference: Option<String>,
    pub external_id: Option<String>,
    pub mppt_type: Option<MpptType>,
    /// Rated power in watts.
    pub capacity_w: Option<i64>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<f64>, nullable)]
    pub azimuth_deg: Option<Option<f64>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<f64>, nullable)]
    pub tilt_deg: Option<Option<f64>>,
    pub installed_at: Option<DateTime<Utc>>,
}

impl MpptBody {
    fn fields(self) -> (Option<GridId>, MpptFields) {
        (
            self.grid_id,
            MpptFields {
                external_system: self.external_system,
                external_reference: self.external_reference,
                external_id: self.external_id,
                mppt_type: self.mppt_type,
                capacity_w: self.capacity_w,
                azimuth_deg: self.azimuth_deg,
                tilt_deg: self.tilt_deg,
                installed_at: self.installed_at,
            },
        )
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(list)
        .service(create)
        .service(get_one)
        .service(update)
        .service(remove);
}

/// MPPTs and PV inverters. Needs `infrastructure_read`.
#[utoipa::path(get, path = "/api/v1/mppts", tag = "mppts", params(ListQuery),
    responses((status = 200, body = Paged<Mppt>), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
#[get("/mppts")]
pub async fn list(
    caller: Caller,
    state: State,
    q: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let q = q.into_inner();
    let page = page(q.limit, q.cursor.as_deref())?;
    let filter = SiteFilter {
        grid_id: q.grid_id,
        search: q.search,
    };
    Ok(HttpResponse::Ok().json(Paged::from(
        state.services.mppts.list(&caller, filter, page).await?,
    )))
}

/// Needs `infrastructure_manage`; `grid_id`, `external_reference`, `external_id` and `installed_at` are required.
#[utoipa::path(post, path = "/api/v1/mppts", tag = "mppts", request_body = MpptBody,
    responses((status = 201, body = Mppt), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
#[post("/mppts")]
pub async fn create(
    caller: Caller,
    state: State,
    body: web::Json<MpptBody>,
) -> ApiResult<HttpResponse> {
    let (grid, fields) = body.into_inner().fields();
    let grid = grid.ok_or_else(|| DomainError::invalid("grid_id", "is required"))?;
    Ok(created(
        state.services.mppts.create(&caller, grid, fields).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/mppts/{id}", tag = "mppts",
    responses((status = 200, body = Mppt), (status = 401, body = Problem), (status = 404, body = Problem)))]
#[get("/mppts/{id}")]
pub async fn get_one(caller: Caller, state: State, id: web::Path<i64>) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.services.mppts.get(&caller, MpptId(*id)).await?))
}

#[utoipa::path(patch, path = "/api/v1/mppts/{id}", tag = "mppts", request_body = MpptBody,
    responses((status = 200, body = Mppt), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
#[patch("/mppts/{id}")]
pub async fn update(
    caller: Caller,
    state: State,
    id: web::Path<i64>,
    body: web::Json<MpptBody>,
) -> ApiResult<HttpResponse> {
    let (grid, fields) = body.into_inner().fields();
    if grid.is_some() {
        return Err(DomainError::invalid("grid_id", "an MPPT cannot move between grids").into());
    }
    Ok(HttpResponse::Ok().json(
        state
            .services
            .mppts
            .update(&caller, MpptId(*id), fields)
            .await?,
    ))
}

#[utoipa::path(delete, path = "/api/v1/mppts/{id}", tag = "mppts",
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
#[delete("/mppts/{id}")]
pub async fn remove(caller: Caller, state: State, id: web::Path<i64>) -> ApiResult<HttpResponse> {
    state.services.mppts.delete(&caller, MpptId(*id)).await?;
    Ok(no_content())
}
