//! One WebSocket session: client messages (subscribe, unsubscribe), events from the hub,
//! heartbeats, and the reasons a session ends. The protocol is described in `docs/websocket.md`.

use std::sync::Arc;
use std::time::Duration;

use actix_ws::{AggregatedMessage, CloseCode, CloseReason, MessageStream, ProtocolError, Session};
use kernel::{DomainError, GridId, Principal};
use serde::{Deserialize, Serialize};
use tokio::time::{Instant, MissedTickBehavior};

use super::{Connection, Hub, SubscribeError};
use crate::state::AppState;

/// Largest client message accepted; client messages are tiny JSON objects.
pub const MAX_CLIENT_MESSAGE: usize = 16 * 1024;

/// What a client may send, as a JSON text frame.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    Subscribe { grid_id: i64 },
    Unsubscribe { grid_id: i64 },
}

/// What the server answers to a client message. Events are sent as published, see
/// `grids::events::LiveEvent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Subscribed {
        grid_id: i64,
    },
    Unsubscribed {
        grid_id: i64,
    },
    Error {
        /// `invalid_message`, `not_found`, `forbidden`, `too_many_subscriptions`, `unavailable`
        /// or `internal`.
        code: &'static str,
        detail: String,
        /// The grid the refused message named, when it named one.
        #[serde(skip_serializing_if = "Option::is_none")]
        grid_id: Option<i64>,
    },
}

impl ServerMessage {
    fn error(code: &'static str, detail: impl Into<String>, grid_id: Option<i64>) -> Self {
        ServerMessage::Error {
            code,
            detail: detail.into(),
            grid_id,
        }
    }

    fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"type":"error","code":"internal","detail":"could not encode the answer"}"#.into()
        })
    }
}

/// Sent to every client when the instance may have missed events (its database listener
/// reconnected): clients should reload what they show.
pub const RESYNC: &str = r#"{"type":"resync"}"#;

/// Why a session ended.
#[derive(Debug)]
enum End {
    /// The client sent a close frame.
    ClientClosed,
    /// The connection went away without a close frame.
    Gone,
    /// The client broke the WebSocket protocol (or sent an oversized frame).
    Protocol(ProtocolError),
    /// The client did not keep up: its buffer filled or a frame could not be sent in time.
    TooSlow,
    /// The client did not answer pings for two intervals.
    Heartbeat,
}

enum Input {
    Client(Option<Result<AggregatedMessage, ProtocolError>>),
    Event(Option<Arc<str>>),
    Tick,
}

/// Runs one authenticated session until it ends. Never panics; a bad client message is
/// answered with an error message and the session goes on.
pub async fn run(
    state: actix_web::web::Data<AppState>,
    principal: Principal,
    session: Session,
    stream: MessageStream,
) {
    let hub = state.hub.clone();
    let mut s = Live {
        conn: hub.connect(),
        session,
        state,
        principal,
        send_timeout: hub.config().send_timeout,
    };
    let end = s.serve(&hub, stream).await;
    s.finish(end).await;
}

struct Live {
    conn: Connection,
    session: Session,
    state: actix_web::web::Data<AppState>,
    principal: Principal,
    send_timeout: Duration,
}

impl Live {
    async fn serve(&mut self, hub: &Hub, stream: MessageStream) -> End {
        let heartbeat = hub.config().heartbeat;
        let mut stream = stream
            .max_frame_size(MAX_CLIENT_MESSAGE)
            .aggregate_continuations()
            .max_continuation_size(MAX_CLIENT_MESSAGE);
        let mut ticker = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        loop {
            let input = tokio::select! {
                m = stream.recv() => Input::Client(m),
                e = self.conn.recv() => Input::Event(e),
                _ = ticker.tick() => Input::Tick,
            };
            let step = match input {
                Input::Client(None) => Err(End::Gone),
                Input::Client(Some(Err(e))) => Err(End::Protocol(e)),
                Input::Client(Some(Ok(message))) => {
                    last_heard = Instant::now();
                    self.on_client(message).await
                }
                Input::Event(Some(payload)) => self.send(&payload).await,
                Input::Event(None) => Err(End::TooSlow),
                Input::Tick if last_heard.elapsed() >= heartbeat * 2 => Err(End::Heartbeat),
                Input::Tick => timed(self.send_timeout, self.session.ping(b"")).await,
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    async fn on_client(&mut self, message: AggregatedMessage) -> Result<(), End> {
        match message {
            AggregatedMessage::Text(text) => {
                let answer = self.answer(&text).await;
                self.send(&answer.to_json()).await
            }
            AggregatedMessage::Binary(_) => {
                let answer = ServerMessage::error(
                    "invalid_message",
                    "send JSON text frames, not binary ones",
                    None,
                );
                self.send(&answer.to_json()).await
            }
            AggregatedMessage::Ping(bytes) => {
                timed(self.send_timeout, self.session.pong(&bytes)).await
            }
            AggregatedMessage::Pong(_) => Ok(()),
            AggregatedMessage::Close(_) => Err(End::ClientClosed),
        }
    }

    /// The answer to one client text message.
    async fn answer(&self, text: &str) -> ServerMessage {
        let message = match serde_json::from_str::<ClientMessage>(text) {
            Ok(m) => m,
            Err(e) => return ServerMessage::error("invalid_message", describe(&e), None),
        };
        match message {
            ClientMessage::Subscribe { grid_id } => {
                // Tenancy and permission, exactly as `GET /api/v1/grids/{id}` checks them.
                if let Err(e) = self
                    .state
                    .services
                    .grids
                    .get(&self.principal, GridId(grid_id))
                    .await
                {
                    return refusal(e, grid_id);
                }
                match self.conn.subscribe(GridId(grid_id)) {
                    Ok(_) => ServerMessage::Subscribed { grid_id },
                    Err(SubscribeError::TooMany(max)) => ServerMessage::error(
                        "too_many_subscriptions",
                        format!("a connection may follow at most {max} grids; unsubscribe first"),
                        Some(grid_id),
                    ),
                    // The hub dropped this connection; the next loop turn closes it.
                    Err(SubscribeError::Dropped) => ServerMessage::error(
                        "unavailable",
                        "the connection is closing",
                        Some(grid_id),
                    ),
                }
            }
            ClientMessage::Unsubscribe { grid_id } => {
                self.conn.unsubscribe(GridId(grid_id));
                ServerMessage::Unsubscribed { grid_id }
            }
        }
    }

    async fn send(&mut self, text: &str) -> Result<(), End> {
        timed(self.send_timeout, self.session.text(text.to_owned())).await
    }

    async fn finish(self, end: End) {
        let reason = match &end {
            End::ClientClosed => Some(CloseReason::from(CloseCode::Normal)),
            End::Gone => None,
            End::Protocol(ProtocolError::Overflow) => Some(CloseReason {
                code: CloseCode::Size,
                description: Some(format!(
                    "messages are limited to {MAX_CLIENT_MESSAGE} bytes"
                )),
            }),
            End::Protocol(_) => Some(CloseReason {
                code: CloseCode::Protocol,
                description: Some("protocol error".into()),
            }),
            End::TooSlow => Some(CloseReason {
                code: CloseCode::Policy,
                description: Some("too slow: the client did not keep up with events".into()),
            }),
            End::Heartbeat => {
                metrics::counter!("tiamat_ws_dropped_total", "reason" => "heartbeat").increment(1);
                Some(CloseReason {
                    code: CloseCode::Policy,
                    description: Some("heartbeat timeout: no answer to pings".into()),
                })
            }
        };
        match &end {
            End::Protocol(e) => tracing::info!(error = %e, "WebSocket protocol error"),
            End::TooSlow | End::Heartbeat => {
                tracing::info!(reason = ?end, "closing a WebSocket client")
            }
            End::ClientClosed | End::Gone => tracing::debug!(reason = ?end, "WebSocket closed"),
        }
        // Leave the hub first: nothing more is buffered for this client.
        drop(self.conn);
        if let Some(reason) = reason {
            // A client that does not read cannot take the close frame either: do not wait long.
            let _ = tokio::time::timeout(Duration::from_secs(1), self.session.close(Some(reason)))
                .await;
        }
    }
}

/// A frame that cannot be handed to the connection within the send timeout means the client
/// does not read: it counts as too slow.
async fn timed(
    limit: Duration,
    send: impl std::future::Future<Output = Result<(), actix_ws::Closed>>,
) -> Result<(), End> {
    match tokio::time::timeout(limit, send).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(actix_ws::Closed)) => Err(End::Gone),
        Err(_) => {
            metrics::counter!("tiamat_ws_dropped_total", "reason" => "send_timeout").increment(1);
            Err(End::TooSlow)
        }
    }
}

fn refusal(e: DomainError, grid_id: i64) -> ServerMessage {
    let (code, detail) = match e {
        DomainError::NotFound(_) => ("not_found", "grid not found".to_owned()),
        DomainError::Forbidden(m) => ("forbidden", m),
        DomainError::Validation(_) | DomainError::Conflict(_) => {
            ("invalid_message", "this grid cannot be followed".to_owned())
        }
        DomainError::Unavailable(m) => ("unavailable", m),
        DomainError::Internal(cause) => {
            tracing::error!(%cause, "internal error while subscribing");
            ("internal", "an internal error occurred".to_owned())
        }
    };
    ServerMessage::error(code, detail, Some(grid_id))
}

/// serde's message without the "at line 1 column 9" tail.
fn describe(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    let msg = match msg.find(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg,
    };
    format!("expected {{\"type\":\"subscribe\"|\"unsubscribe\",\"grid_id\":<integer>}}: {msg}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(s: &str) -> Result<ClientMessage, String> {
        serde_json::from_str(s).map_err(|e| describe(&e))
    }

    #[test]
    fn client_messages_parse_strictly() {
        assert_eq!(
            parse(r#"{"type":"subscribe","grid_id":7}"#),
            Ok(ClientMessage::Subscribe { grid_id: 7 })
        );
        assert_eq!(
            parse(r#"{"grid_id":7,"type":"unsubscribe"}"#),
            Ok(ClientMessage::Unsubscribe { grid_id: 7 })
        );
        for bad in [
            "",
            "subscribe 7",
            "[]",
            r#"{"type":"subscribe"}"#,
            r#"{"type":"subscribe","grid_id":"7"}"#,
            r#"{"type":"subscribe","grid_id":7.5}"#,
            r#"{"type":"subscribe","grid_id":7,"extra":1}"#,
            r#"{"type":"shout","grid_id":7}"#,
        ] {
            let err = parse(bad).expect_err(bad);
            assert!(err.starts_with("expected {\"type\""), "{bad}: {err}");
            assert!(!err.contains("at line"), "{err}");
        }
    }

    #[test]
    fn server_messages_have_the_documented_shape() {
        let v = |m: ServerMessage| serde_json::to_value(&m).unwrap();
        assert_eq!(
            v(ServerMessage::Subscribed { grid_id: 3 }),
            json!({"type": "subscribed", "grid_id": 3})
        );
        assert_eq!(
            v(ServerMessage::Unsubscribed { grid_id: 3 }),
            json!({"type": "unsubscribed", "grid_id": 3})
        );
        assert_eq!(
            v(refusal(DomainError::NotFound("grid"), 3)),
            json!({"type": "error", "code": "not_found", "detail": "grid not found", "grid_id": 3})
        );
        assert_eq!(
            v(ServerMessage::error("invalid_message", "x", None)),
            json!({"type": "error", "code": "invalid_message", "detail": "x"})
        );
        let resync: serde_json::Value = serde_json::from_str(RESYNC).unwrap();
        assert_eq!(resync, json!({"type": "resync"}));
    }
}
