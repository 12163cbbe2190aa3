//! The WebSocket endpoint end to end: real HTTP servers on loopback, one PostgreSQL database,
//! events fanned out between instances through LISTEN/NOTIFY.

use std::time::Duration;

use actix_codec::Framed;
use actix_web::http::StatusCode;
use actix_web::test::TestRequest;
use awc::BoxedSocket;
use awc::ws::{CloseCode, Codec, Frame, Message};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tiamat_tests::{As, Server, TestApp};

/// Longest wait for any one expected message.
const WAIT: Duration = Duration::from_secs(5);

fn client() -> awc::Client {
    awc::Client::builder().timeout(WAIT).finish()
}

fn with_credentials(mut req: awc::ws::WebsocketsRequest, who: &As) -> awc::ws::WebsocketsRequest {
    match who {
        As::Nobody => {}
        As::Key(k) => req = req.header("X-API-Key", k.as_str()),
        As::Token(t) => req = req.header("Authorization", format!("Bearer {t}")),
    }
    req
}

/// A WebSocket client.
struct Ws {
    io: Framed<BoxedSocket, Codec>,
    /// Answer the server's pings (a well-behaved client); off to play a dead one.
    pong: bool,
}

impl Ws {
    async fn try_connect(url: &str, who: &As) -> Result<Ws, awc::error::WsClientError> {
        let req = with_credentials(client().ws(url), who);
        let (_, io) = req.connect().await?;
        Ok(Ws { io, pong: true })
    }

    async fn connect(server: &Server, who: &As) -> Ws {
        Self::try_connect(&server.url("/api/v1/ws"), who)
            .await
            .expect("WebSocket connect")
    }

    async fn send(&mut self, v: Value) {
        self.send_text(&v.to_string()).await;
    }

    async fn send_text(&mut self, s: &str) {
        self.io
            .send(Message::Text(s.to_owned().into()))
            .await
            .expect("send");
    }

    /// The next frame other than pings (answered) and pongs, within [`WAIT`].
    async fn frame(&mut self) -> Frame {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.io.next())
                .await
                .expect("no message from the server in time")
                .expect("the connection ended")
                .expect("protocol error");
            match frame {
                Frame::Ping(b) if self.pong => {
                    self.io.send(Message::Pong(b)).await.expect("pong");
                }
                Frame::Ping(_) | Frame::Pong(_) => {}
                other => return other,
            }
        }
    }

    /// The next text message, as JSON.
    async fn json(&mut self) -> Value {
        match self.frame().await {
            Frame::Text(t) => serde_json::from_slice(&t).expect("a JSON message"),
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    async fn subscribe(&mut self, grid: i64) -> Value {
        self.send(json!({"type": "subscribe", "grid_id": grid}))
            .await;
        self.json().await
    }

    async fn subscribed(&mut self, grid: i64) {
        let answer = self.subscribe(grid).await;
        assert_eq!(answer, json!({"type": "subscribed", "grid_id": grid}));
    }
}

/// Changes a grid through an instance's REST API, over HTTP.
async fn patch_grid(server: &Server, who: &As, grid: i64, pv: i64) {
    let mut req = client().patch(server.url(&format!("/api/v1/grids/{grid}")));
    match who {
        As::Nobody => {}
        As::Key(k) => req = req.insert_header(("X-API-Key", k.as_str())),
        As::Token(t) => req = req.insert_header(("Authorization", format!("Bearer {t}"))),
    }
    let mut res = req
        .send_json(&json!({"pv_capacity_wp": pv}))
        .await
        .expect("PATCH");
    let body: Value = res.json().await.expect("JSON body");
    assert_eq!(res.status(), StatusCode::OK, "{body}");
}

/// Asserts `event` is the committed UPDATE of `grid` to `pv`, in the documented envelope.
fn assert_grid_update(event: &Value, grid: i64, pv: i64) {
    assert_eq!(event["type"], "grid", "{event}");
    assert_eq!(event["operation"], "UPDATE", "{event}");
    assert_eq!(event["grid_id"], grid, "{event}");
    assert_eq!(event["data"]["id"], grid, "{event}");
    assert_eq!(event["data"]["pv_capacity_wp"], pv, "{event}");
    let mut keys: Vec<_> = event
        .as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect();
    keys.sort();
    assert_eq!(keys, ["data", "grid_id", "operation", "type"]);
}

#[actix_web::test]
async fn events_cross_instances_and_stay_in_their_grid() {
    let t = TestApp::start().await;
    let a = t.organization("A").await;
    let x = t.grid(a, "X").await;
    let y = t.grid(a, "Y").await;
    let key = t.key(a, "MANAGER").await;
    let one = t.serve().await;
    let two = t.serve().await;

    // Both clients on instance two; the changes go through instance one.
    let mut on_x = Ws::connect(&two, &key).await;
    on_x.subscribed(x).await;
    let mut on_y = Ws::connect(&two, &key).await;
    on_y.subscribed(y).await;

    patch_grid(&one, &key, x, 1111).await;
    assert_grid_update(&on_x.json().await, x, 1111);

    // Y's client did not get X's event: the first thing it hears is Y's change.
    patch_grid(&one, &key, y, 2222).await;
    assert_grid_update(&on_y.json().await, y, 2222);
    // ... and X's client did not get Y's.
    patch_grid(&one, &key, x, 3333).await;
    assert_grid_update(&on_x.json().await, x, 3333);

    assert_eq!(two.app.state.hub.connections(), 2);
    drop(on_x);
    // The server notices the closed socket and leaves the hub.
    let deadline = tokio::time::Instant::now() + WAIT;
    while two.app.state.hub.connections() != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a closed client stays in the hub"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
async fn another_organizations_grid_cannot_be_followed() {
    let t = TestApp::start().await;
    let a = t.organization("A").await;
    let b = t.organization("B").await;
    let mine = t.grid(a, "Mine").await;
    let theirs = t.grid(b, "Theirs").await;
    let key = t.key(a, "MANAGER").await;
    let their_key = t.key(b, "MANAGER").await;
    let server = t.serve().await;

    let mut ws = Ws::connect(&server, &key).await;
    let answer = ws.subscribe(theirs).await;
    assert_eq!(answer["type"], "error", "{answer}");
    assert_eq!(answer["code"], "not_found", "{answer}");
    assert_eq!(answer["grid_id"], theirs, "{answer}");
    assert_eq!(answer["detail"], "grid not found", "{answer}");
    let missing = ws.subscribe(999_999).await;
    assert_eq!(missing["code"], "not_found", "{missing}");
    ws.subscribed(mine).await;
    assert_eq!(server.app.state.hub.subscribers(kernel::GridId(theirs)), 0);

    // Their change is published, but not to us: the first event we get is our own grid's.
    patch_grid(&server, &their_key, theirs, 7).await;
    patch_grid(&server, &key, mine, 8).await;
    assert_grid_update(&ws.json().await, mine, 8);
}

#[actix_web::test]
async fn credentials_are_checked_before_the_upgrade() {
    let t = TestApp::start().await;
    let a = t.organization("A").await;
    let grid = t.grid(a, "G").await;
    let (_, member) = t.member(a, "SUPPORT").await;
    let server = t.serve().await;
    let url = server.url("/api/v1/ws");

    // No credentials, a bad key, a bad or expired token: 401, and no WebSocket.
    let expired = format!(
        "?access_token={}",
        tiamat_tests::token(&uuid::Uuid::new_v4().to_string(), -60)
    );
    for (who, query) in [
        (As::Nobody, ""),
        (As::Key("tmt_nope_nope".into()), ""),
        (As::Nobody, "?access_token=not-a-jwt"),
        (As::Nobody, expired.as_str()),
    ] {
        match Ws::try_connect(&format!("{url}{query}"), &who).await {
            Err(awc::error::WsClientError::InvalidResponseStatus(s)) => {
                assert_eq!(s, StatusCode::UNAUTHORIZED, "{who:?} {query}")
            }
            Err(e) => panic!("{who:?} {query}: {e}"),
            Ok(_) => panic!("{who:?} {query}: upgraded without valid credentials"),
        }
    }

    // The refusal is the usual problem+json, sent instead of the upgrade.
    let upgrade = |uri: &str| {
        TestRequest::get()
            .uri(uri)
            .insert_header(("Upgrade", "websocket"))
            .insert_header(("Connection", "Upgrade"))
            .insert_header(("Sec-WebSocket-Version", "13"))
            .insert_header(("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="))
    };
    let r = t.send(upgrade("/api/v1/ws").to_request()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.headers.get("content-type").unwrap(),
        "application/problem+json"
    );
    assert_eq!(r.body["code"], "unauthenticated");
    // With credentials but without an upgrade: a problem too, not a hang.
    let r = t.get("/api/v1/ws", &member).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    assert_eq!(r.body["code"], "malformed_request");

    // Browsers: the JWT as `access_token`.
    let As::Token(jwt) = &member else {
        panic!("members sign in with a token")
    };
    let mut ws = Ws::try_connect(&format!("{url}?access_token={jwt}"), &As::Nobody)
        .await
        .expect("access_token authenticates");
    ws.subscribed(grid).await;
    // Headers keep working too.
    let mut ws = Ws::connect(&server, &member).await;
    ws.subscribed(grid).await;
}

#[actix_web::test]
async fn bad_messages_are_answered_and_the_session_goes_on() {
    let t = TestApp::start().await;
    let a = t.organization("A").await;
    let x = t.grid(a, "X").await;
    let y = t.grid(a, "Y").await;
    let key = t.key(a, "MANAGER").await;
    let server = t
        .serve_with(api::ws::HubConfig {
            max_subscriptions: 1,
            ..Default::default()
        })
        .await;
    let mut ws = Ws::connect(&server, &key).await;

    for bad in [
        "hello",
        "{}",
        r#"{"type":"subscribe"}"#,
        r#"{"type":"subscribe","grid_id":"x"}"#,
        r#"{"type":"subscribe","grid_id":1,"filter":"all"}"#,
        r#"{"type":"dance","grid_id":1}"#,
    ] {
        ws.send_text(bad).await;
        let answer = ws.json().await;
        assert_eq!(answer["type"], "error", "{bad}: {answer}");
        assert_eq!(answer["code"], "invalid_message", "{bad}: {answer}");
        assert!(answer["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
    ws.io
        .send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .expect("send binary");
    assert_eq!(ws.json().await["code"], "invalid_message");

    // Still usable: subscriptions, the per-connection cap, unsubscribe.
    ws.subscribed(x).await;
    ws.subscribed(x).await; // a repeat is acknowledged, not counted twice
    let full = ws.subscribe(y).await;
    assert_eq!(full["code"], "too_many_subscriptions", "{full}");
    ws.send(json!({"type": "unsubscribe", "grid_id": x})).await;
    assert_eq!(
        ws.json().await,
        json!({"type": "unsubscribed", "grid_id": x})
    );
    ws.subscribed(y).await;

    // X is no longer followed: the first event is Y's.
    patch_grid(&server, &key, x, 10).await;
    patch_grid(&server, &key, y, 20).await;
    assert_grid_update(&ws.json().await, y, 20);
}

#[actix_web::test]
async fn silent_clients_are_closed_and_live_ones_kept() {
    let t = TestApp::start().await;
    let a = t.organization("A").await;
    let x = t.grid(a, "X").await;
    let key = t.key(a, "MANAGER").await;
    let heartbeat = Duration::from_millis(200);
    let server = t
        .serve_with(api::ws::HubConfig {
            heartbeat,
            ..Default::default()
        })
        .await;

    // Taken before the server's session starts, so the silence it measures is never longer.
    let started = tokio::time::Instant::now();
    let mut dead = Ws::connect(&server, &key).await;
    dead.pong = false;
    let mut live = Ws::connect(&server, &key).await;

    // The dead client sees pings, then a close frame: policy violation, heartbeat timeout.
    // Meanwhile the live one answers every ping.
    let deadline = started + WAIT;
    let mut pings = 0;
    let close = loop {
        tokio::select! {
            frame = dead.io.next() => match frame.expect("a close frame first").expect("frame") {
                Frame::Ping(_) => pings += 1,
                Frame::Close(reason) => break reason,
                other => panic!("unexpected {other:?}"),
            },
            frame = live.io.next() => match frame.expect("live stays open").expect("frame") {
                Frame::Ping(b) => live.io.send(Message::Pong(b)).await.expect("pong"),
                other => panic!("unexpected {other:?}"),
            },
            _ = tokio::time::sleep_until(deadline) => panic!("the silent client was not closed"),
        }
    };
    let reason = close.expect("a close reason");
    assert_eq!(reason.code, CloseCode::Policy);
    assert!(
        reason
            .description
            .as_deref()
            .unwrap_or("")
            .contains("heartbeat"),
        "{reason:?}"
    );
    assert!(pings >= 1, "pinged before being closed");
    assert!(
        started.elapsed() >= heartbeat * 2,
        "closed after {:?}, before two intervals",
        started.elapsed()
    );

    // The live client answered every ping meanwhile and still works.
    live.subscribed(x).await;
    patch_grid(&server, &key, x, 5).await;
    assert_grid_update(&live.json().await, x, 5);
}

#[actix_web::test]
async fn the_listener_reconnects_and_clients_are_told_to_resync() {
    let t = TestApp::start().await;
    let a = t.organization("A").await;
    let x = t.grid(a, "X").await;
    let key = t.key(a, "MANAGER").await;
    let server = t.serve().await;
    let mut ws = Ws::connect(&server, &key).await;
    ws.subscribed(x).await;

    // Kill the listener's database session, as a failover or a network cut would.
    let mut admin = AsyncPgConnection::establish(&t.db.url)
        .await
        .expect("connect");
    #[derive(diesel::QueryableByName)]
    struct Killed {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        killed: bool,
    }
    let killed: Vec<Killed> = diesel::sql_query(format!(
        "SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity \
         WHERE application_name = '{}' AND datname = current_database()",
        store::listener::APPLICATION_NAME
    ))
    .load(&mut admin)
    .await
    .expect("terminate");
    assert_eq!(killed.len(), 1, "exactly one listener session");
    assert!(killed[0].killed);

    // It comes back by itself, and says events may have been missed.
    assert_eq!(ws.json().await, json!({"type": "resync"}));
    assert!(server.live.is_listening());
    patch_grid(&server, &key, x, 42).await;
    assert_grid_update(&ws.json().await, x, 42);
}

#[actix_web::test]
async fn the_endpoint_is_in_the_openapi_document() {
    let t = TestApp::start().await;
    let doc = t.get("/api/v1/openapi.json", &As::Nobody).await;
    assert_eq!(doc.status, StatusCode::OK);
    let op = &doc.body["paths"]["/api/v1/ws"]["get"];
    assert!(op.is_object(), "GET /api/v1/ws is not documented");
    let text = op.to_string();
    for needle in ["subscribe", "access_token", "resync", "101", "401"] {
        assert!(
            text.contains(needle),
            "the description lacks {needle}: {text}"
        );
    }
}
