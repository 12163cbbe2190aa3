//! Directive batches: scheduled rules that switch a grid's full service or scan its meters, and
//! their executions with progress.

use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use kernel::GridId;
use meters::batches::{
    ActionKind, BatchExecution, DirectiveBatchId, DirectiveRule, ExecutionFilter, RuleDraft,
    RuleFilter, RulePatch,
};
use meters::{BatchExecutionId, InteractionType};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::{Paged, State, created, no_content, nullable, page};
use crate::auth::Caller;
use crate::error::{ApiResult, Problem};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RuleListQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub grid_id: Option<GridId>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExecutionListQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    /// Only this rule's executions.
    pub directive_batch_id: Option<i64>,
    pub grid_id: Option<GridId>,
}

/// A new rule.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRule {
    pub grid_id: GridId,
    /// `HH:MM` (24-hour) in the grid's timezone.
    pub local_time: String,
    /// Every day (true) or once (false).
    pub is_repeating: bool,
    /// `FS_ON`, `FS_OFF` or `SCAN`.
    pub action: ActionKind,
    /// SCAN only: the read, e.g. `READ_CREDIT`, `READ_VOLTAGE`, `READ_POWER`.
    pub scan_kind: Option<InteractionType>,
}

/// Changes to a rule; absent fields stay as they are. A change arms a fired one-shot rule again.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRule {
    pub local_time: Option<String>,
    pub is_repeating: Option<bool>,
    pub action: Option<ActionKind>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<InteractionType>, nullable)]
    pub scan_kind: Option<Option<InteractionType>>,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(list)
        .service(create)
        .service(get_one)
        .service(update)
        .service(remove)
        .service(run_now)
        .service(list_executions)
        .service(get_execution);
}

/// Directive batch rules, oldest first. Needs `meter_read` (staff).
#[utoipa::path(get, path = "/api/v1/directive-batches", tag = "directive-batches", params(RuleListQuery),
    responses((status = 200, body = Paged<DirectiveRule>), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
#[get("/directive-batches")]
pub async fn list(
    caller: Caller,
    state: State,
    q: web::Query<RuleListQuery>,
) -> ApiResult<HttpResponse> {
    let q = q.into_inner();
    let page = page(q.limit, q.cursor.as_deref())?;
    let filter = RuleFilter { grid_id: q.grid_id };
    Ok(HttpResponse::Ok().json(Paged::from(
        state
            .services
            .batches
            .list_rules(&caller, filter, page)
            .await?,
    )))
}

/// Creates a rule that fires at `local_time` in the grid's timezone, daily or once. FS_ON/FS_OFF
/// switch the FS meters' relays on dual-meter grids and the power limit on single-meter grids
/// (none for ON, each meter's HPS limit for OFF); SCAN reads every meter. Needs `batch_manage`.
#[utoipa::path(post, path = "/api/v1/directive-batches", tag = "directive-batches", request_body = CreateRule,
    responses((status = 201, body = DirectiveRule), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
#[post("/directive-batches")]
pub async fn create(
    caller: Caller,
    state: State,
    body: web::Json<CreateRule>,
) -> ApiResult<HttpResponse> {
    let b = body.into_inner();
    let draft = RuleDraft {
        grid_id: b.grid_id,
        local_time: b.local_time,
        is_repeating: b.is_repeating,
        action: b.action,
        scan_kind: b.scan_kind,
    };
    Ok(created(
        state.services.batches.create_rule(&caller, draft).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/directive-batches/{id}", tag = "directive-batches",
    responses((status = 200, body = DirectiveRule), (status = 401, body = Problem), (status = 404, body = Problem)))]
#[get("/directive-batches/{id}")]
pub async fn get_one(caller: Caller, state: State, id: web::Path<i64>) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(
        state
            .services
            .batches
            .get_rule(&caller, DirectiveBatchId(*id))
            .await?,
    ))
}

/// Changes a rule. Needs `batch_manage`.
#[utoipa::path(patch, path = "/api/v1/directive-batches/{id}", tag = "directive-batches", request_body = UpdateRule,
    responses((status = 200, body = DirectiveRule), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
#[patch("/directive-batches/{id}")]
pub async fn update(
    caller: Caller,
    state: State,
    id: web::Path<i64>,
    body: web::Json<UpdateRule>,
) -> ApiResult<HttpResponse> {
    let b = body.into_inner();
    let patch = RulePatch {
        local_time: b.local_time,
        is_repeating: b.is_repeating,
        action: b.action,
        scan_kind: b.scan_kind,
    };
    Ok(HttpResponse::Ok().json(
        state
            .services
            .batches
            .update_rule(&caller, DirectiveBatchId(*id), patch)
            .await?,
    ))
}

/// Deletes a rule (soft); its executions stay. Needs `batch_manage`.
#[utoipa::path(delete, path = "/api/v1/directive-batches/{id}", tag = "directive-batches",
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
#[delete("/directive-batches/{id}")]
pub async fn remove(caller: Caller, state: State, id: web::Path<i64>) -> ApiResult<HttpResponse> {
    state
        .services
        .batches
        .delete_rule(&caller, DirectiveBatchId(*id))
        .await?;
    Ok(no_content())
}

/// Runs a rule now, whatever its time: one intake per qualifying meter (coalesced into a waiting
/// identical command where there is one, superseding contradicting ones), linked to the new
/// execution. FS rules set the grid's FS intent. Needs `batch_manage`. Send an
/// `Idempotency-Key` header to make retries safe.
#[utoipa::path(post, path = "/api/v1/directive-batches/{id}/executions", tag = "directive-batches",
    responses((status = 201, body = BatchExecution), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 503, body = Problem)))]
#[post("/directive-batches/{id}/executions")]
pub async fn run_now(
    caller: Caller,
    state: State,
    id: web::Path<i64>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    let rule = DirectiveBatchId(*id);
    let fingerprint = serde_json::json!({ "directive_batch_id": rule });
    crate::idempotency::run(&state, &caller, &req, &fingerprint, || async {
        let execution = state.services.batches.run_now(&caller, rule).await?;
        Ok((
            actix_web::http::StatusCode::CREATED,
            serde_json::to_value(&execution).unwrap_or_default(),
        ))
    })
    .await
}

/// Executions with progress (counted through the interactions they created or joined), oldest
/// first. Needs `meter_read` (staff). List an execution's interactions with
/// `GET /interactions?batch_execution_id=`.
#[utoipa::path(get, path = "/api/v1/directive-batch-executions", tag = "directive-batches", params(ExecutionListQuery),
    responses((status = 200, body = Paged<BatchExecution>), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
#[get("/directive-batch-executions")]
pub async fn list_executions(
    caller: Caller,
    state: State,
    q: web::Query<ExecutionListQuery>,
) -> ApiResult<HttpResponse> {
    let q = q.into_inner();
    let page = page(q.limit, q.cursor.as_deref())?;
    let filter = ExecutionFilter {
        directive_batch_id: q.directive_batch_id.map(DirectiveBatchId),
        grid_id: q.grid_id,
    };
    Ok(HttpResponse::Ok().json(Paged::from(
        state
            .services
            .batches
            .list_executions(&caller, filter, page)
            .await?,
    )))
}

#[utoipa::path(get, path = "/api/v1/directive-batch-executions/{id}", tag = "directive-batches",
    responses((status = 200, body = BatchExecution), (status = 401, body = Problem), (status = 404, body = Problem)))]
#[get("/directive-batch-executions/{id}")]
pub async fn get_execution(
    caller: Caller,
    state: State,
    id: web::Path<i64>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(
        state
            .services
            .batches
            .get_execution(&caller, BatchExecutionId(*id))
            .await?,
    ))
}
