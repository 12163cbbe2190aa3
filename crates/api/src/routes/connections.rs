use actix_web::{HttpResponse, get, patch, post, put, web};
use grids::connections::{
    Connection, ConnectionFields, ConnectionFilter, NewConnection, RequestedMeterInput,
};
use grids::vocab::{ConnectionSource, DocumentType};
use kernel::{ConnectionId, CustomerId, GridId};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::{Paged, State, created, nullable, page};
use crate::auth::Caller;
use crate::error::{ApiResult, Problem};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub grid_id: Option<GridId>,
    pub customer_id: Option<CustomerId>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionBody {
    pub external_system: Option<ConnectionSource>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<DocumentType>, nullable)]
    pub document_type: Option<Option<DocumentType>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub document_id: Option<Option<String>>,
    pub women_impacted: Option<i32>,
    pub is_public: Option<bool>,
    pub is_commercial: Option<bool>,
    pub is_residential: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<bool>, nullable)]
    pub is_lifeline: Option<Option<bool>>,
    pub is_building_wired: Option<bool>,
    pub is_using_led_bulbs: Option<bool>,
}

impl From<ConnectionBody> for ConnectionFields {
    fn from(b: ConnectionBody) -> Self {
        ConnectionFields {
            external_system: b.external_system,
            document_type: b.document_type,
            document_id: b.document_id,
            women_impacted: b.women_impacted,
            is_public: b.is_public,
            is_commercial: b.is_commercial,
            is_residential: b.is_residential,
            is_lifeline: b.is_lifeline,
            is_building_wired: b.is_building_wired,
            is_using_led_bulbs: b.is_using_led_bulbs,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConnection {
    pub customer_id: CustomerId,
    /// Survey submission id; a repeat answers 409.
    pub upload_uuid: Option<String>,
    #[serde(default)]
    pub requested_meters: Vec<RequestedMeterInput>,
    pub external_system: Option<ConnectionSource>,
    pub document_type: Option<DocumentType>,
    pub document_id: Option<String>,
    pub women_impacted: Option<i32>,
    pub is_public: Option<bool>,
    pub is_commercial: Option<bool>,
    pub is_residential: Option<bool>,
    pub is_lifeline: Option<bool>,
    pub is_building_wired: Option<bool>,
    pub is_using_led_bulbs: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestedMeters {
    pub requested_meters: Vec<RequestedMeterInput>,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(list)
        .service(create)
        .service(get_one)
        .service(update)
        .service(replace_requested_meters);
}

/// Service connections. Needs `connection_read`.
#[utoipa::path(get, path = "/api/v1/connections", tag = "connections", params(ListQuery),
    responses((status = 200, body = Paged<Connection>), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
#[get("/connections")]
pub async fn list(
    caller: Caller,
    state: State,
    q: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let q = q.into_inner();
    let page = page(q.limit, q.cursor.as_deref())?;
    let filter = ConnectionFilter {
        grid_id: q.grid_id,
        customer_id: q.customer_id,
    };
    Ok(HttpResponse::Ok().json(Paged::from(
        state
            .services
            .connections
            .list(&caller, filter, page)
            .await?,
    )))
}

/// A customer's connection with the meters asked for; their fees add to the customer's
/// `total_connection_fee`. Grid and currency follow the customer. Needs `connection_manage`.
#[utoipa::path(post, path = "/api/v1/connections", tag = "connections", request_body = CreateConnection,
    responses((status = 201, body = Connection), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
#[post("/connections")]
pub async fn create(
    caller: Caller,
    state: State,
    body: web::Json<CreateConnection>,
) -> ApiResult<HttpResponse> {
    let b = body.into_inner();
    let new = NewConnection {
        customer_id: b.customer_id,
        upload_uuid: b.upload_uuid,
        fields: ConnectionFields {
            external_system: b.external_system,
            document_type: Some(b.document_type),
            document_id: Some(b.document_id),
            women_impacted: b.women_impacted,
            is_public: b.is_public,
            is_commercial: b.is_commercial,
            is_residential: b.is_residential,
            is_lifeline: Some(b.is_lifeline),
            is_building_wired: b.is_building_wired,
            is_using_led_bulbs: b.is_using_led_bulbs,
        },
        requested_meters: b.requested_meters,
    };
    Ok(created(
        state.services.connections.create(&caller, new).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/connections/{id}", tag = "connections",
    responses((status = 200, body = Connection), (status = 401, body = Problem), (status = 404, body = Problem)))]
#[get("/connections/{id}")]
pub async fn get_one(caller: Caller, state: State, id: web::Path<i64>) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(
        state
            .services
            .connections
            .get(&caller, ConnectionId(*id))
            .await?,
    ))
}

#[utoipa::path(patch, path = "/api/v1/connections/{id}", tag = "connections", request_body = ConnectionBody,
    responses((status = 200, body = Connection), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
#[patch("/connections/{id}")]
pub async fn update(
    caller: Caller,
    state: State,
    id: web::Path<i64>,
    body: web::Json<ConnectionBody>,
) -> ApiResult<HttpResponse> {
    let fields = body.into_inner().into();
    Ok(HttpResponse::Ok().json(
        state
            .services
            .connections
            .update(&caller, ConnectionId(*id), fields)
            .await?,
    ))
}

/// Replaces the requested meters; the customer's fee total moves by the difference.
#[utoipa::path(put, path = "/api/v1/connections/{id}/requested-meters", tag = "connections", request_body = RequestedMeters,
    responses((status = 200, body = Connection), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
#[put("/connections/{id}/requested-meters")]
pub async fn replace_requested_meters(
    caller: Caller,
    state: State,
    id: web::Path<i64>,
    body: web::Json<RequestedMeters>,
) -> ApiResult<HttpResponse> {
    let meters = body.into_inner().requested_meters;
    Ok(HttpResponse::Ok().json(
        state
            .services
            .connections
            .replace_requested_meters(&caller, ConnectionId(*id), meters)
            .await?,
    ))
}
