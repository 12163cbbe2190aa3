use actix_web::{HttpResponse, delete, get, patch, post, web};
use kernel::{AgentId, GridId};
use orgs::{Agent, AgentChanges, PeopleFilter, PersonFields};
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
pub struct CreateAgent {
    pub grid_id: GridId,
    pub full_name: String,
    /// E.164, e.g. +2348012345678; the agent logs in with it.
    pub phone: String,
    pub email: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAgent {
    pub full_name: Option<String>,
    pub phone: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub email: Option<Option<String>>,
    /// Moving an agent to another grid moves it to that grid's organization.
    pub grid_id: Option<GridId>,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(list)
        .service(create)
        .service(get_one)
        .service(update)
        .service(remove);
}

/// Agents (credit vendors). Needs `agent_read`.
#[utoipa::path(get, path = "/api/v1/agents", tag = "agents", params(ListQuery),
    responses((status = 200, body = Paged<Agent>), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
#[get("/agents")]
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
        state.services.agents.list(&caller, filter, page).await?,
    )))
}

/// Creates an agent on a grid, with a phone login. Needs `agent_manage`.
#[utoipa::path(post, path = "/api/v1/agents", tag = "agents", request_body = CreateAgent,
    responses((status = 201, body = Agent), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
#[post("/agents")]
pub async fn create(
    caller: Caller,
    state: State,
    body: web::Json<CreateAgent>,
) -> ApiResult<HttpResponse> {
    let b = body.into_inner();
    Ok(created(
        state
            .services
            .agents
            .create(&caller, b.grid_id, b.full_name, b.email, b.phone)
            .await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/agents/{id}", tag = "agents",
    responses((status = 200, body = Agent), (status = 401, body = Problem), (status = 404, body = Problem)))]
#[get("/agents/{id}")]
pub async fn get_one(caller: Caller, state: State, id: web::Path<i64>) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.services.agents.get(&caller, AgentId(*id)).await?))
}

#[utoipa::path(patch, path = "/api/v1/agents/{id}", tag = "agents", request_body = UpdateAgent,
    responses((status = 200, body = Agent), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
#[patch("/agents/{id}")]
pub async fn update(
    caller: Caller,
    state: State,
    id: web::Path<i64>,
    body: web::Json<UpdateAgent>,
) -> ApiResult<HttpResponse> {
    let b = body.into_inner();
    let changes = AgentChanges {
        person: PersonFields {
            full_name: b.full_name,
            email: b.email,
            phone: b.phone.map(Some),
        },
        grid_id: b.grid_id,
    };
    Ok(HttpResponse::Ok().json(
        state
            .services
            .agents
            .update(&caller, AgentId(*id), changes)
            .await?,
    ))
}

#[utoipa::path(delete, path = "/api/v1/agents/{id}", tag = "agents",
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
#[delete("/agents/{id}")]
pub async fn remove(caller: Caller, state: State, id: web::Path<i64>) -> ApiResult<HttpResponse> {
    state.services.agents.delete(&caller, AgentId(*id)).await?;
    Ok(no_content())
}
