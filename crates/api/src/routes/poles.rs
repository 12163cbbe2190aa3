use actix_web::{HttpResponse, delete, get, patch, post, web};
use grids::site::{Pole, PoleFields, SiteFilter};
use kernel::{DomainError, GridId, PoleId};
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

/// Pole fields; `grid_id`, `external_reference`, `latitude` and `longitude` are required on create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PoleBody {
    pub grid_id: Option<GridId>,
    /// Up to 10 characters, unique per grid.
    pub external_reference: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub nickname: Option<Option<String>>,
    pub is_virtual: Option<bool>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<f64>, nullable)]
    pub location_accuracy_m: Option<Option<f64>>,
}

impl PoleBody {
    fn fields(self) -> (Option<GridId>, PoleFields) {
        (
            self.grid_id,
            PoleFields {
                external_reference: self.external_reference,
                nickname: self.nickname,
                is_virtual: self.is_virtual,
                latitude: self.latitude,
                longitude: self.longitude,
                location_accuracy_m: self.location_accuracy_m,
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

/// Distribution poles. Needs `infrastructure_read`.
#[utoipa::path(get, path = "/api/v1/poles", tag = "poles", params(ListQuery),
    responses((status = 200, body = Paged<Pole>), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
#[get("/poles")]
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
        state.services.poles.list(&caller, filter, page).await?,
    )))
}

/// Needs `infrastructure_manage`.
#[utoipa::path(post, path = "/api/v1/poles", tag = "poles", request_body = PoleBody,
    responses((status = 201, body = Pole), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
#[post("/poles")]
pub async fn create(
    caller: Caller,
    state: State,
    body: web::Json<PoleBody>,
) -> ApiResult<HttpResponse> {
    let (grid, fields) = body.into_inner().fields();
    let grid = grid.ok_or_else(|| DomainError::invalid("grid_id", "is required"))?;
    Ok(created(
        state.services.poles.create(&caller, grid, fields).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/poles/{id}", tag = "poles",
    responses((status = 200, body = Pole), (status = 401, body = Problem), (status = 404, body = Problem)))]
#[get("/poles/{id}")]
pub async fn get_one(caller: Caller, state: State, id: web::Path<i64>) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.services.poles.get(&caller, PoleId(*id)).await?))
}

#[utoipa::path(patch, path = "/api/v1/poles/{id}", tag = "poles", request_body = PoleBody,
    responses((status = 200, body = Pole), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
#[patch("/poles/{id}")]
pub async fn update(
    caller: Caller,
    state: State,
    id: web::Path<i64>,
    body: web::Json<PoleBody>,
) -> ApiResult<HttpResponse> {
    let (grid, fields) = body.into_inner().fields();
    if grid.is_some() {
        return Err(DomainError::invalid("grid_id", "a pole cannot move between grids").into());
    }
    Ok(HttpResponse::Ok().json(
        state
            .services
            .poles
            .update(&caller, PoleId(*id), fields)
            .await?,
    ))
}

/// Refused with 409 while meters hang on the pole.
#[utoipa::path(delete, path = "/api/v1/poles/{id}", tag = "poles",
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
#[delete("/poles/{id}")]
pub async fn remove(caller: Caller, state: State, id: web::Path<i64>) -> ApiResult<HttpResponse> {
    state.services.poles.delete(&caller, PoleId(*id)).await?;
    Ok(no_content())
}
