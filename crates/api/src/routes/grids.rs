use actix_web::{HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Utc};
use grids::{Grid, GridFields, GridFilter};
use kernel::{Currency, GridId, OrganizationId};
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
    /// Matches the grid name.
    pub search: Option<String>,
}

/// Grid fields; money in minor units of the grid's currency, energy in watt-hours.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GridBody {
    pub name: Option<String>,
    /// IANA timezone; default Africa/Lagos.
    pub timezone: Option<String>,
    /// ISO-4217 code; required on create.
    pub currency: Option<Currency>,
    pub hps_tariff_minor_per_kwh: Option<i64>,
    pub fs_tariff_minor_per_kwh: Option<i64>,
    pub default_hps_connection_fee: Option<i64>,
    pub default_fs_1_phase_connection_fee: Option<i64>,
    pub default_fs_3_phase_connection_fee: Option<i64>,
    pub pv_capacity_wp: Option<i64>,
    pub storage_capacity_wh: Option<i64>,
    pub lifeline_threshold_wh: Option<i64>,
    pub lifeline_threshold_days: Option<i32>,
    pub commissioning_initial_credit_wh: Option<i64>,
    pub is_hidden_from_reporting: Option<bool>,
    pub is_three_phase_supported: Option<bool>,
    pub uses_dual_meter_setup: Option<bool>,
    pub is_automatic_meter_install_enabled: Option<bool>,
    pub is_automatic_payout_generation_enabled: Option<bool>,
    pub is_dcu_connectivity_tracking_enabled: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<f64>, nullable)]
    pub latitude: Option<Option<f64>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<f64>, nullable)]
    pub longitude: Option<Option<f64>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<DateTime<Utc>>, nullable)]
    pub deployed_at: Option<Option<DateTime<Utc>>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<DateTime<Utc>>, nullable)]
    pub commissioned_at: Option<Option<DateTime<Utc>>>,
    /// On create only: platform SUPERADMINs may create a grid in another organization.
    pub organization_id: Option<OrganizationId>,
}

impl GridBody {
    fn into_fields(self) -> (Option<OrganizationId>, GridFields) {
        (
            self.organization_id,
            GridFields {
                name: self.name,
                timezone: self.timezone,
                currency: self.currency,
                hps_tariff_minor_per_kwh: self.hps_tariff_minor_per_kwh,
                fs_tariff_minor_per_kwh: self.fs_tariff_minor_per_kwh,
                default_hps_connection_fee: self.default_hps_connection_fee,
                default_fs_1_phase_connection_fee: self.default_fs_1_phase_connection_fee,
                default_fs_3_phase_connection_fee: self.default_fs_3_phase_connection_fee,
                pv_capacity_wp: self.pv_capacity_wp,
                storage_capacity_wh: self.storage_capacity_wh,
                lifeline_threshold_wh: self.lifeline_threshold_wh,
                lifeline_threshold_days: self.lifeline_threshold_days,
                commissioning_initial_credit_wh: self.commissioning_initial_credit_wh,
                is_hidden_from_reporting: self.is_hidden_from_reporting,
                is_three_phase_supported: self.is_three_phase_supported,
                uses_dual_meter_setup: self.uses_dual_meter_setup,
                is_automatic_meter_install_enabled: self.is_automatic_meter_install_enabled,
                is_automatic_payout_generation_enabled: self.is_automatic_payout_generation_enabled,
                is_dcu_connectivity_tracking_enabled: self.is_dcu_connectivity_tracking_enabled,
                latitude: self.latitude,
                longitude: self.longitude,
                deployed_at: self.deployed_at,
                commissioned_at: self.commissioned_at,
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

/// Grids of the caller's organization (agents and customers: their own grid). Needs `grid_read`.
#[utoipa::path(get, path = "/api/v1/grids", tag = "grids", params(ListQuery),
    responses((status = 200, body = Paged<Grid>), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
#[get("/grids")]
pub async fn list(
    caller: Caller,
    state: State,
    q: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let q = q.into_inner();
    let page = page(q.limit, q.cursor.as_deref())?;
    let filter = GridFilter {
        search: q.search,
        only: None,
    };
    Ok(HttpResponse::Ok().json(Paged::from(
        state.services.grids.list(&caller, filter, page).await?,
    )))
}

/// Creates a grid. Needs `grid_manage`; `name` and `currency` are required.
#[utoipa::path(post, path = "/api/v1/grids", tag = "grids", request_body = GridBody,
    responses((status = 201, body = Grid), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
#[post("/grids")]
pub async fn create(
    caller: Caller,
    state: State,
    body: web::Json<GridBody>,
) -> ApiResult<HttpResponse> {
    let (org, fields) = body.into_inner().into_fields();
    Ok(created(
        state.services.grids.create(&caller, org, fields).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/grids/{id}", tag = "grids",
    responses((status = 200, body = Grid), (status = 401, body = Problem), (status = 404, body = Problem)))]
#[get("/grids/{id}")]
pub async fn get_one(caller: Caller, state: State, id: web::Path<i64>) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.services.grids.get(&caller, GridId(*id)).await?))
}

/// Changes a grid's settings. Needs `grid_manage`.
#[utoipa::path(patch, path = "/api/v1/grids/{id}", tag = "grids", request_body = GridBody,
    responses((status = 200, body = Grid), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
#[patch("/grids/{id}")]
pub async fn update(
    caller: Caller,
    state: State,
    id: web::Path<i64>,
    body: web::Json<GridBody>,
) -> ApiResult<HttpResponse> {
    let (org, fields) = body.into_inner().into_fields();
    if org.is_some() {
        return Err(kernel::DomainError::invalid(
            "organization_id",
            "a grid cannot move between organizations",
        )
        .into());
    }
    Ok(HttpResponse::Ok().json(
        state
            .services
            .grids
            .update(&caller, GridId(*id), fields)
            .await?,
    ))
}

/// Soft-deletes a grid that has no customers or agents left.
#[utoipa::path(delete, path = "/api/v1/grids/{id}", tag = "grids",
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
#[delete("/grids/{id}")]
pub async fn remove(caller: Caller, state: State, id: web::Path<i64>) -> ApiResult<HttpResponse> {
    state.services.grids.delete(&caller, GridId(*id)).await?;
    Ok(no_content())
}
