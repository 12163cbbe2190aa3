use actix_web::{HttpResponse, delete, get, patch, post, web};
use kernel::{CustomerId, GridId};
use orgs::people::CustomerDraft;
use orgs::{
    Customer, CustomerChanges, CustomerFields, Gender, GeneratorSize, PeopleFilter, PersonFields,
};
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
    /// Matches name, phone or e-mail.
    pub search: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCustomer {
    pub grid_id: GridId,
    pub full_name: String,
    /// E.164. With an e-mail or phone the customer gets a login.
    pub phone: Option<String>,
    pub email: Option<String>,
    pub gender: Option<Gender>,
    pub generator_owned: Option<GeneratorSize>,
    pub is_hidden_from_reporting: Option<bool>,
    pub lives_primarily_in_the_community: Option<bool>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCustomer {
    pub full_name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub email: Option<Option<String>>,
    pub grid_id: Option<GridId>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Gender>, nullable)]
    pub gender: Option<Option<Gender>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<GeneratorSize>, nullable)]
    pub generator_owned: Option<Option<GeneratorSize>>,
    pub is_hidden_from_reporting: Option<bool>,
    pub lives_primarily_in_the_community: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<f64>, nullable)]
    pub latitude: Option<Option<f64>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<f64>, nullable)]
    pub longitude: Option<Option<f64>>,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(list)
        .service(create)
        .service(get_one)
        .service(update)
        .service(remove);
}

/// Customers, filterable by grid and a name/phone search. Needs `customer_read`; agents see their
/// grid's customers, a customer sees itself.
#[utoipa::path(get, path = "/api/v1/customers", tag = "customers", params(ListQuery),
    responses((status = 200, body = Paged<Customer>), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
#[get("/customers")]
pub async fn list(
    caller: Caller,
    state: State,
    q: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let q = q.into_inner();
    let page = page(q.limit, q.cursor.as_deref())?;
    let filter = PeopleFilter {
        grid_id: q.grid_id,
        search: q.search,
        only_customer: None,
    };
    Ok(HttpResponse::Ok().json(Paged::from(
        state.services.customers.list(&caller, filter, page).await?,
    )))
}

/// Creates a customer on a grid. Needs `customer_manage`.
#[utoipa::path(post, path = "/api/v1/customers", tag = "customers", request_body = CreateCustomer,
    responses((status = 201, body = Customer), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
#[post("/customers")]
pub async fn create(
    caller: Caller,
    state: State,
    body: web::Json<CreateCustomer>,
) -> ApiResult<HttpResponse> {
    let b = body.into_inner();
    let draft = CustomerDraft {
        grid_id: b.grid_id,
        full_name: b.full_name,
        email: b.email,
        phone: b.phone,
        fields: CustomerFields {
            gender: Some(b.gender),
            generator_owned: Some(b.generator_owned),
            is_hidden_from_reporting: b.is_hidden_from_reporting,
            lives_primarily_in_the_community: b.lives_primarily_in_the_community,
            latitude: Some(b.latitude),
            longitude: Some(b.longitude),
        },
    };
    Ok(created(
        state.services.customers.create(&caller, draft).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/customers/{id}", tag = "customers",
    responses((status = 200, body = Customer), (status = 401, body = Problem), (status = 404, body = Problem)))]
#[get("/customers/{id}")]
pub async fn get_one(caller: Caller, state: State, id: web::Path<i64>) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(
        state
            .services
            .customers
            .get(&caller, CustomerId(*id))
            .await?,
    ))
}

#[utoipa::path(patch, path = "/api/v1/customers/{id}", tag = "customers", request_body = UpdateCustomer,
    responses((status = 200, body = Customer), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
#[patch("/customers/{id}")]
pub async fn update(
    caller: Caller,
    state: State,
    id: web::Path<i64>,
    body: web::Json<UpdateCustomer>,
) -> ApiResult<HttpResponse> {
    let b = body.into_inner();
    let changes = CustomerChanges {
        person: PersonFields {
            full_name: b.full_name,
            email: b.email,
            phone: b.phone,
        },
        grid_id: b.grid_id,
        fields: CustomerFields {
            gender: b.gender,
            generator_owned: b.generator_owned,
            is_hidden_from_reporting: b.is_hidden_from_reporting,
            lives_primarily_in_the_community: b.lives_primarily_in_the_community,
            latitude: b.latitude,
            longitude: b.longitude,
        },
    };
    Ok(HttpResponse::Ok().json(
        state
            .services
            .customers
            .update(&caller, CustomerId(*id), changes)
            .await?,
    ))
}

#[utoipa::path(delete, path = "/api/v1/customers/{id}", tag = "customers",
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
#[delete("/customers/{id}")]
pub async fn remove(caller: Caller, state: State, id: web::Path<i64>) -> ApiResult<HttpResponse> {
    state
        .services
        .customers
        .delete(&caller, CustomerId(*id))
        .await?;
    Ok(no_content())
}
