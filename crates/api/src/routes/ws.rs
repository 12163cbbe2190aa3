//! `GET /api/v1/ws`: live events over WebSocket. Authentication happens before the upgrade.

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, HttpResponse, get, web};
use kernel::Principal;
use orgs::Credential;

use super::State;
use crate::auth::{Caller, query_token};
use crate::error::{ApiError, ApiResult, Problem};
use crate::ws::session;

/// Live events of the grids you follow, over WebSocket.
///
/// **Authentication** happens before the upgrade, as for every other route:
/// `Authorization: Bearer <JWT>` or `X-API-Key: <key>`; browsers, which cannot set headers on
/// a WebSocket, pass the JWT as the `access_token` query parameter. Without valid credentials
/// the answer is a 401 problem+json and no WebSocket is opened.
///
/// **Client messages** (JSON text frames):
/// `{"type":"subscribe","grid_id":7}` and `{"type":"unsubscribe","grid_id":7}`.
/// The server answers `{"type":"subscribed","grid_id":7}` / `{"type":"unsubscribed","grid_id":7}`,
/// or `{"type":"error","code":"...","detail":"...","grid_id":7}` with code `not_found` (no such
/// grid in your organization), `forbidden`, `invalid_message`, `too_many_subscriptions` (at most
/// 100 grids per connection), `unavailable` or `internal`. A bad message never closes the
/// session.
///
/// **Events** for followed grids, as committed on any instance:
/// `{"type":"grid"|"meter"|"dcu"|"meter_interaction","operation":"CREATE"|"UPDATE"|"DELETE",
/// "grid_id":7,"data":{...}}`. `{"type":"resync"}` means events may have been missed: reload.
///
/// **Limits**: the server pings every 30 s and closes a client silent for two intervals
/// (close code 1008); a client that falls 256 events behind is closed as "too slow" (1008);
/// client frames are limited to 16 KiB (1009). See `docs/websocket.md`.
#[utoipa::path(get, path = "/api/v1/ws", tag = "live",
    params(("access_token" = Option<String>, Query,
        description = "JWT for browsers, which cannot send an Authorization header on a WebSocket upgrade")),
    responses(
        (status = 101, description = "Switching Protocols: the WebSocket is open"),
        (status = 400, body = Problem, description = "Not a WebSocket upgrade request"),
        (status = 401, body = Problem),
        (status = 503, body = Problem, description = "Credentials could not be checked right now"),
    ))]
#[get("/ws")]
pub async fn ws(req: HttpRequest, body: web::Payload, state: State) -> ApiResult<HttpResponse> {
    let principal = authenticate(&req, &state).await?;
    let (response, ws_session, stream) = actix_ws::handle(&req, body).map_err(|_| {
        ApiError::BadRequest(
            "this endpoint speaks WebSocket: send a GET with `Upgrade: websocket`".into(),
        )
    })?;
    actix_web::rt::spawn(session::run(state, principal, ws_session, stream));
    Ok(response)
}

/// Headers first, exactly as the `Caller` extractor reads them; without any, the
/// `access_token` query parameter as a bearer token.
async fn authenticate(req: &HttpRequest, state: &State) -> ApiResult<Principal> {
    let headers = req.headers();
    let has_header = headers.contains_key("authorization") || headers.contains_key("x-api-key");
    if !has_header && let Some(token) = query_token(req) {
        return match state
            .auth
            .authenticate(Credential::Bearer(token.trim()))
            .await
        {
            Ok(p) => Ok(p),
            Err(failure) => {
                metrics::counter!("tiamat_auth_failures_total", "reason" => failure.reason())
                    .increment(1);
                tracing::info!(
                    reason = failure.reason(),
                    path = req.path(),
                    "authentication failed"
                );
                Err(ApiError::Auth(failure))
            }
        };
    }
    Caller::from_request(req, &mut Payload::None)
        .await
        .map(|c| c.0)
}
