//! The receiving end of live events: one dedicated connection per instance (not from the pool)
//! runs `LISTEN tiamat_live` and hands each committed change to a callback, so WebSocket
//! subscribers on every instance hear of every change, whichever instance made it.
//!
//! The listener never gives up: a lost connection is logged, counted and re-established with a
//! capped exponential backoff. Events sent while it is disconnected are lost (NOTIFY is not
//! durable); the [`ListenerHandle::status`] watch lets the caller tell its clients to refetch.

use std::sync::Arc;
use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::StreamExt;
use kernel::GridId;
use serde::Deserialize;
use tokio::sync::watch;

use crate::events::CHANNEL;

/// First reconnect delay; doubled after each failed attempt up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often an idle listener checks that its connection still answers: a connection that died
/// without a word (a dropped network path) would otherwise wait forever for notifications.
const KEEPALIVE: Duration = Duration::from_secs(30);
/// Longest wait for connecting, `LISTEN` or the keep-alive query.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// `application_name` of the listening session, to find it in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "tiamat-live-listener";

/// The running listener: its task and whether it is connected and listening right now.
pub struct ListenerHandle {
    status: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl ListenerHandle {
    /// `true` while the listener is connected and listening. Each change is one connect or loss.
    pub fn status(&self) -> watch::Receiver<bool> {
        self.status.clone()
    }

    pub fn is_listening(&self) -> bool {
        *self.status.borrow()
    }

    /// Waits until the listener is listening (or `timeout` passes); returns whether it is.
    pub async fn wait_listening(&self, timeout: Duration) -> bool {
        let mut status = self.status.clone();
        tokio::time::timeout(timeout, status.wait_for(|up| *up))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Stops the listener.
    pub fn abort(&self) {
        self.task.abort();
    }
}

impl Drop for ListenerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts [`run`] on the tokio runtime. Dropping the handle stops the listener.
pub fn spawn<F, A>(database_url: String, on_event: F, on_key_revoked: A) -> ListenerHandle
where
    F: Fn(GridId, Arc<str>) + Send + Sync + 'static,
    A: Fn(&str) + Send + Sync + 'static,
{
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(run(database_url, tx, on_event, on_key_revoked));
    ListenerHandle { status: rx, task }
}

/// Listens on [`CHANNEL`] forever, calling `on_event(grid_id, payload)` for every notification.
/// The payload is passed on unchanged (the JSON of a `grids::events::LiveEvent`). `status` is set
/// to `true` while listening. Never returns and never panics; connection losses are retried.
/// Revoked API keys announced on [`crate::events::AUTH_CHANNEL`] go to `on_key_revoked(prefix)`
/// (`"*"`: every key of some organization), so each instance's key cache forgets them.
pub async fn run<F, A>(
    database_url: String,
    status: watch::Sender<bool>,
    on_event: F,
    on_key_revoked: A,
) where
    F: Fn(GridId, Arc<str>) + Send + Sync + 'static,
    A: Fn(&str) + Send + Sync + 'static,
{
    let mut backoff = Backoff::new(MIN_BACKOFF, MAX_BACKOFF);
    loop {
        let failure = listen(
            &database_url,
            &status,
            &on_event,
            &on_key_revoked,
            &mut backoff,
        )
        .await;
        status.send_if_modified(|up| std::mem::replace(up, false));
        metrics::gauge!("tiamat_live_listener_connected").set(0.0);
        metrics::counter!("tiamat_live_listener_errors_total").increment(1);
        let delay = backoff.next_delay();
        tracing::warn!(
            error = %failure,
            retry_in_ms = delay.as_millis() as u64,
            "live-event listener lost its database connection; reconnecting"
        );
        tokio::time::sleep(delay).await;
    }
}

#[derive(Debug, thiserror::Error)]
enum ListenError {
    #[error("connect: {0}")]
    Connect(#[from] diesel::ConnectionError),
    #[error("{0}")]
    Query(#[from] diesel::result::Error),
    #[error("{0} timed out")]
    Timeout(&'static str),
    #[error("the connection closed")]
    Closed,
}

/// One connection's lifetime: connect, `LISTEN`, then relay until the connection fails.
async fn listen<F, A>(
    url: &str,
    status: &watch::Sender<bool>,
    on_event: &F,
    on_key_revoked: &A,
    backoff: &mut Backoff,
) -> ListenError
where
    F: Fn(GridId, Arc<str>),
    A: Fn(&str),
{
    let mut conn = match timed("connecting", AsyncPgConnection::establish(url)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return e.into(),
        Err(e) => return e,
    };
    for sql in [
        format!("SET application_name = '{APPLICATION_NAME}'"),
        format!("LISTEN {CHANNEL}"),
        format!("LISTEN {}", crate::events::AUTH_CHANNEL),
    ] {
        match timed("LISTEN", diesel::sql_query(sql).execute(&mut conn)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return e.into(),
            Err(e) => return e,
        }
    }
    backoff.reset();
    status.send_replace(true);
    metrics::gauge!("tiamat_live_listener_connected").set(1.0);
    tracing::info!(channel = CHANNEL, "live-event listener is listening");

    let mut keepalive = tokio::time::interval(KEEPALIVE);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    keepalive.tick().await;
    loop {
        // The stream only borrows the connection: notifications that arrive while the keep-alive
        // query runs wait in the connection's own queue.
        let next = {
            let mut stream = std::pin::pin!(conn.notifications_stream());
            tokio::select! {
                n = stream.next() => Some(n),
                _ = keepalive.tick() => None,
            }
        };
        match next {
            Some(Some(Ok(n))) if n.channel == crate::events::AUTH_CHANNEL => {
                on_key_revoked(&n.payload)
            }
            Some(Some(Ok(n))) => relay(&n.payload, on_event),
            Some(Some(Err(e))) => return e.into(),
            Some(None) => return ListenError::Closed,
            None => match timed(
                "keep-alive",
                diesel::sql_query("SELECT 1").execute(&mut conn),
            )
            .await
            {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return e.into(),
                Err(e) => return e,
            },
        }
    }
}

async fn timed<T>(
    what: &'static str,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, ListenError> {
    tokio::time::timeout(QUERY_TIMEOUT, fut)
        .await
        .map_err(|_| ListenError::Timeout(what))
}

/// Just enough of the event to route it.
#[derive(Deserialize)]
struct Envelope {
    grid_id: GridId,
}

fn relay<F: Fn(GridId, Arc<str>)>(payload: &str, on_event: &F) {
    match serde_json::from_str::<Envelope>(payload) {
        Ok(e) => {
            metrics::counter!("tiamat_live_events_total").increment(1);
            on_event(e.grid_id, Arc::from(payload));
        }
        Err(e) => {
            metrics::counter!("tiamat_live_listener_errors_total").increment(1);
            tracing::warn!(error = %e, len = payload.len(), "ignoring a live event without a grid_id");
        }
    }
}

/// Capped exponential backoff: `min`, `2·min`, `4·min` ... `max`, `max` ...
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            next: min,
        }
    }

    pub fn next_delay(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(self.max);
        now
    }

    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(MIN_BACKOFF, MAX_BACKOFF);
        let delays: Vec<u128> = (0..9).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        b.reset();
        assert_eq!(b.next_delay(), MIN_BACKOFF);
    }

    #[test]
    fn relays_the_payload_unchanged_and_skips_events_without_a_grid() {
        let seen = std::sync::Mutex::new(Vec::new());
        let on_event = |g: GridId, p: Arc<str>| {
            if let Ok(mut s) = seen.lock() {
                s.push((g, p.to_string()));
            }
        };
        let payload = r#"{"grid_id":7,"type":"grid","operation":"UPDATE","data":{"id":7}}"#;
        relay(payload, &on_event);
        relay(r#"{"type":"grid"}"#, &on_event);
        relay("not json", &on_event);
        let seen = seen.into_inner().unwrap();
        assert_eq!(seen, vec![(GridId(7), payload.to_owned())]);
    }
}
