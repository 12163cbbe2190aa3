use actix_web::{HttpResponse, delete, get, patch, post, web};
use kernel::{GridId, MemberId, OrganizationId, Role};
use orgs::people::MemberInvite;
use orgs::{Member, MemberChanges, MemberFilter, PersonFields};
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
    pub role: Option<Role>,
    /// Matches name or e-mail, case-insensitively.
    pub search: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteMember {
    pub email: String,
    pub full_name: String,
    pub role: Role,
    /// Platform SUPERADMINs may invite into another organization.
    pub organization_id: Option<OrganizationId>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMember {
    pub full_name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub phone: Option<Option<String>>,
    pub role: Option<Role>,
    pub training_level: Option<i16>,
    pub hidden: Option<bool>,
    pub subscribed_to_revenue_notifications: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i64>, nullable)]
    pub commissioning_grid_id: Option<Option<GridId>>,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(list)
        .service(invite)
        .service(get_one)
        .service(update)
        .service(remove);
}

/// Staff of the caller's organization. Needs `member_read`.
#[utoipa::path(get, path = "/api/v1/members", tag = "members", params(ListQuery),
    responses((status = 200, body = Paged<Member>), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
#[get("/members")]
pub async fn list(
    caller: Caller,
    state: State,
    q: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let q = q.into_inner();
    let page = page(q.limit, q.cursor.as_deref())?;
    let filter = MemberFilter {
        role: q.role,
        search: q.search,
    };
    Ok(HttpResponse::Ok().json(Paged::from(
        state.services.members.list(&caller, filter, page).await?,
    )))
}

/// Invites a staff member by e-mail. Needs `member_manage`; nobody grants a role above their own,
/// and only a SUPERADMIN grants SUPERADMIN.
#[utoipa::path(post, path = "/api/v1/members", tag = "members", request_body = InviteMember,
    responses((status = 201, body = Member), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
#[post("/members")]
pub async fn invite(
    caller: Caller,
    state: State,
    body: web::Json<InviteMember>,
) -> ApiResult<HttpResponse> {
    let b = body.into_inner();
    let invite = MemberInvite {
        email: b.email,
        full_name: b.full_name,
        role: b.role,
        organization_id: b.organization_id,
    };
    Ok(created(
        state.services.members.invite(&caller, invite).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/members/{id}", tag = "members",
    responses((status = 200, body = Member), (status = 401, body = Problem), (status = 404, body = Problem)))]
#[get("/members/{id}")]
pub async fn get_one(caller: Caller, state: State, id: web::Path<i64>) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.services.members.get(&caller, MemberId(*id)).await?))
}

/// Changes a member. Needs `member_manage` and a role at least the member's.
#[utoipa::path(patch, path = "/api/v1/members/{id}", tag = "members", request_body = UpdateMember,
    responses((status = 200, body = Member), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
#[patch("/members/{id}")]
pub async fn update(
    caller: Caller,
    state: State,
    id: web::Path<i64>,
    body: web::Json<UpdateMember>,
) -> ApiResult<HttpResponse> {
    let b = body.into_inner();
    let changes = MemberChanges {
        person: PersonFields {
            full_name: b.full_name,
            email: None,
            phone: b.phone,
        },
        role: b.role,
        training_level: b.training_level,
        hidden: b.hidden,
        subscribed_to_revenue_notifications: b.subscribed_to_revenue_notifications,
        commissioning_grid_id: b.commissioning_grid_id,
    };
    Ok(HttpResponse::Ok().json(
        state
            .services
            .members
            .update(&caller, MemberId(*id), changes)
            .await?,
    ))
}

/// Removes a member and disables its login.
#[utoipa::path(delete, path = "/api/v1/members/{id}", tag = "members",
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
#[delete("/members/{id}")]
pub async fn remove(caller: Caller, state: State, id: web::Path<i64>) -> ApiResult<HttpResponse> {
    state
        .services
        .members
        .delete(&caller, MemberId(*id))
        .await?;
    Ok(no_content())
}
