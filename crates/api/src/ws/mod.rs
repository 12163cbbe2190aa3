//! Live events over WebSocket: the per-instance fan-out [`Hub`] and the session protocol.
//!
//! Every instance runs one PostgreSQL listener (`store::listener`) that feeds
//! [`Hub::dispatch`]; the hub hands each event to the connections subscribed to its grid. A
//! connection has one bounded buffer: a client that does not keep up is dropped, so a slow
//! reader never makes the server hold more than [`HubConfig::buffer`] events for it.

pub mod session;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use kernel::GridId;
use tokio::sync::mpsc;

/// Limits of the WebSocket endpoint. The defaults are the documented production values.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Events buffered per connection before it counts as too slow and is dropped.
    pub buffer: usize,
    /// The server pings this often; a client silent for two intervals is closed.
    pub heartbeat: Duration,
    /// Grids one connection may follow at once.
    pub max_subscriptions: usize,
    /// Longest wait for one frame to go out before the client counts as too slow.
    pub send_timeout: Duration,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            buffer: 256,
            heartbeat: Duration::from_secs(30),
            max_subscriptions: 100,
            send_timeout: Duration::from_secs(10),
        }
    }
}

/// Why the hub refused a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    #[error("at most {0} subscriptions per connection")]
    TooMany(usize),
    #[error("the connection was dropped")]
    Dropped,
}

type ConnId = u64;

struct Subscriber {
    tx: mpsc::Sender<Arc<str>>,
    grids: HashSet<GridId>,
    dropped: Arc<AtomicBool>,
}

#[derive(Default)]
struct Rooms {
    rooms: HashMap<GridId, HashSet<ConnId>>,
    subscribers: HashMap<ConnId, Subscriber>,
}

impl Rooms {
    /// Takes a connection out of every room; returns its entry.
    fn remove(&mut self, id: ConnId) -> Option<Subscriber> {
        let sub = self.subscribers.remove(&id)?;
        for grid in &sub.grids {
            if let Some(room) = self.rooms.get_mut(grid) {
                room.remove(&id);
                if room.is_empty() {
                    self.rooms.remove(grid);
                }
            }
        }
        Some(sub)
    }
}

struct Inner {
    config: HubConfig,
    rooms: RwLock<Rooms>,
    next_id: AtomicU64,
}

/// Rooms of WebSocket connections per grid. Cheap to clone, `Send + Sync`.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new(HubConfig::default())
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("config", &self.inner.config)
            .field("connections", &self.connections())
            .finish()
    }
}

impl Hub {
    pub fn new(config: HubConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                rooms: RwLock::new(Rooms::default()),
                next_id: AtomicU64::new(1),
            }),
        }
    }

    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    // A panic while holding the lock cannot leave the maps half-changed in a way that matters
    // (every change is a single insert or remove), so a poisoned lock is used as is.
    fn read(&self) -> RwLockReadGuard<'_, Rooms> {
        self.inner.rooms.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Rooms> {
        self.inner.rooms.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new connection, subscribed to nothing yet. Dropping it unregisters it.
    pub fn connect(&self) -> Connection {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(self.inner.config.buffer.max(1));
        let dropped = Arc::new(AtomicBool::new(false));
        self.write().subscribers.insert(
            id,
            Subscriber {
                tx,
                grids: HashSet::new(),
                dropped: dropped.clone(),
            },
        );
        metrics::gauge!("tiamat_ws_connections").increment(1.0);
        Connection {
            hub: self.clone(),
            id,
            rx,
            dropped,
        }
    }

    /// Hands `payload` to every connection subscribed to `grid`, without waiting. A connection
    /// whose buffer is full is dropped: it stops receiving and its session closes as too slow.
    /// Returns how many connections got the event.
    pub fn dispatch(&self, grid: GridId, payload: Arc<str>) -> usize {
        let mut delivered = 0;
        let mut full = Vec::new();
        {
            let rooms = self.read();
            let Some(room) = rooms.rooms.get(&grid) else {
                return 0;
            };
            for id in room {
                let Some(sub) = rooms.subscribers.get(id) else {
                    continue;
                };
                match sub.tx.try_send(payload.clone()) {
                    Ok(()) => delivered += 1,
                    Err(mpsc::error::TrySendError::Full(_)) => full.push(*id),
                    // The session is ending; its `Connection` drop unregisters it.
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
        }
        if !full.is_empty() {
            let mut rooms = self.write();
            for id in full {
                if let Some(sub) = rooms.remove(id) {
                    sub.dropped.store(true, Ordering::Release);
                    metrics::counter!("tiamat_ws_dropped_total", "reason" => "slow").increment(1);
                    tracing::info!(
                        connection = id,
                        grid = grid.get(),
                        "dropping a WebSocket client that does not keep up"
                    );
                }
            }
        }
        delivered
    }

    /// Sends `payload` to every connection, whatever it follows (e.g. "you may have missed events").
    pub fn broadcast(&self, payload: Arc<str>) -> usize {
        let rooms = self.read();
        rooms
            .subscribers
            .values()
            .filter(|s| s.tx.try_send(payload.clone()).is_ok())
            .count()
    }

    /// Open connections on this instance.
    pub fn connections(&self) -> usize {
        self.read().subscribers.len()
    }

    /// Connections following `grid` on this instance.
    pub fn subscribers(&self, grid: GridId) -> usize {
        self.read().rooms.get(&grid).map_or(0, HashSet::len)
    }
}

/// One WebSocket connection's place in the hub: its subscriptions and its event buffer.
pub struct Connection {
    hub: Hub,
    id: ConnId,
    rx: mpsc::Receiver<Arc<str>>,
    dropped: Arc<AtomicBool>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("dropped", &self.is_dropped())
            .finish()
    }
}

impl Connection {
    /// Follows `grid`. Returns `false` when it was followed already. The caller checks tenancy.
    pub fn subscribe(&self, grid: GridId) -> Result<bool, SubscribeError> {
        let max = self.hub.inner.config.max_subscriptions;
        let mut rooms = self.hub.write();
        let Some(sub) = rooms.subscribers.get_mut(&self.id) else {
            return Err(SubscribeError::Dropped);
        };
        if sub.grids.contains(&grid) {
            return Ok(false);
        }
        if sub.grids.len() >= max {
            return Err(SubscribeError::TooMany(max));
        }
        sub.grids.insert(grid);
        rooms.rooms.entry(grid).or_default().insert(self.id);
        Ok(true)
    }

    /// Stops following `grid`. Returns `false` when it was not followed.
    pub fn unsubscribe(&self, grid: GridId) -> bool {
        let mut rooms = self.hub.write();
        let Some(sub) = rooms.subscribers.get_mut(&self.id) else {
            return false;
        };
        if !sub.grids.remove(&grid) {
            return false;
        }
        if let Some(room) = rooms.rooms.get_mut(&grid) {
            room.remove(&self.id);
            if room.is_empty() {
                rooms.rooms.remove(&grid);
            }
        }
        true
    }

    /// The grids this connection follows, in id order.
    pub fn subscriptions(&self) -> Vec<GridId> {
        let rooms = self.hub.read();
        let mut grids: Vec<GridId> = rooms
            .subscribers
            .get(&self.id)
            .map(|s| s.grids.iter().copied().collect())
            .unwrap_or_default();
        grids.sort();
        grids
    }

    /// The next event for this connection; `None` once the hub dropped it as too slow.
    pub async fn recv(&mut self) -> Option<Arc<str>> {
        if self.is_dropped() {
            return None;
        }
        self.rx.recv().await
    }

    /// The next buffered event without waiting, if any (and the connection was not dropped).
    pub fn try_recv(&mut self) -> Option<Arc<str>> {
        if self.is_dropped() {
            return None;
        }
        self.rx.try_recv().ok()
    }

    /// True once the hub dropped this connection because its buffer was full.
    pub fn is_dropped(&self) -> bool {
        self.dropped.load(Ordering::Acquire)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.hub.write().remove(self.id);
        metrics::gauge!("tiamat_ws_connections").decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(buffer: usize) -> Hub {
        Hub::new(HubConfig {
            buffer,
            max_subscriptions: 3,
            ..HubConfig::default()
        })
    }

    fn ev(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    #[tokio::test]
    async fn events_reach_only_the_subscribers_of_their_grid() {
        let hub = hub(8);
        let mut a = hub.connect();
        let mut b = hub.connect();
        let mut both = hub.connect();
        assert_eq!(a.subscribe(GridId(1)), Ok(true));
        assert_eq!(b.subscribe(GridId(2)), Ok(true));
        both.subscribe(GridId(1)).unwrap();
        both.subscribe(GridId(2)).unwrap();

        assert_eq!(hub.dispatch(GridId(1), ev("one")), 2);
        assert_eq!(hub.dispatch(GridId(2), ev("two")), 2);
        assert_eq!(hub.dispatch(GridId(3), ev("three")), 0);

        assert_eq!(a.recv().await.as_deref(), Some("one"));
        assert_eq!(
            a.try_recv(),
            None,
            "grid 2's event must not reach grid 1's room"
        );
        assert_eq!(b.recv().await.as_deref(), Some("two"));
        assert_eq!(b.try_recv(), None);
        assert_eq!(both.recv().await.as_deref(), Some("one"));
        assert_eq!(both.recv().await.as_deref(), Some("two"));
        assert_eq!(hub.subscribers(GridId(1)), 2);
    }

    #[tokio::test]
    async fn the_same_payload_is_shared_not_copied() {
        let hub = hub(8);
        let mut a = hub.connect();
        let mut b = hub.connect();
        a.subscribe(GridId(1)).unwrap();
        b.subscribe(GridId(1)).unwrap();
        let payload = ev("shared");
        hub.dispatch(GridId(1), payload.clone());
        let (x, y) = (a.recv().await.unwrap(), b.recv().await.unwrap());
        assert!(Arc::ptr_eq(&x, &payload) && Arc::ptr_eq(&y, &payload));
    }

    #[tokio::test]
    async fn a_full_buffer_drops_the_subscriber_and_spares_the_others() {
        let hub = hub(2);
        let mut slow = hub.connect();
        let mut fast = hub.connect();
        slow.subscribe(GridId(1)).unwrap();
        fast.subscribe(GridId(1)).unwrap();

        assert_eq!(hub.dispatch(GridId(1), ev("1")), 2);
        assert_eq!(fast.recv().await.as_deref(), Some("1"));
        assert_eq!(hub.dispatch(GridId(1), ev("2")), 2);
        assert_eq!(fast.recv().await.as_deref(), Some("2"));
        assert!(!slow.is_dropped());
        // `slow` never reads: its buffer of 2 is full, the third event drops it.
        assert_eq!(hub.dispatch(GridId(1), ev("3")), 1);
        assert!(slow.is_dropped());
        assert_eq!(
            slow.recv().await,
            None,
            "a dropped connection gets nothing more"
        );
        assert_eq!(slow.subscriptions(), Vec::<GridId>::new());
        assert_eq!(slow.subscribe(GridId(2)), Err(SubscribeError::Dropped));
        assert_eq!(fast.recv().await.as_deref(), Some("3"));
        assert_eq!(hub.subscribers(GridId(1)), 1);
        assert_eq!(hub.dispatch(GridId(1), ev("4")), 1);
        assert_eq!(fast.recv().await.as_deref(), Some("4"));
    }

    #[tokio::test]
    async fn unsubscribe_and_disconnect_leave_no_trace() {
        let hub = hub(8);
        let mut a = hub.connect();
        let b = hub.connect();
        a.subscribe(GridId(1)).unwrap();
        a.subscribe(GridId(2)).unwrap();
        b.subscribe(GridId(2)).unwrap();
        assert_eq!(
            a.subscribe(GridId(1)),
            Ok(false),
            "subscribing twice is harmless"
        );
        assert_eq!(a.subscriptions(), vec![GridId(1), GridId(2)]);

        assert!(a.unsubscribe(GridId(1)));
        assert!(!a.unsubscribe(GridId(1)));
        assert_eq!(hub.dispatch(GridId(1), ev("x")), 0);
        assert_eq!(a.try_recv(), None);
        assert_eq!(hub.subscribers(GridId(1)), 0);

        assert_eq!(hub.connections(), 2);
        drop(b);
        assert_eq!(hub.connections(), 1);
        assert_eq!(hub.subscribers(GridId(2)), 1);
        assert_eq!(hub.dispatch(GridId(2), ev("y")), 1);
        drop(a);
        assert_eq!(hub.connections(), 0);
        assert_eq!(hub.subscribers(GridId(2)), 0);
        assert!(hub.read().rooms.is_empty(), "empty rooms are removed");
    }

    #[test]
    fn subscriptions_per_connection_are_capped() {
        let hub = hub(8);
        let a = hub.connect();
        for g in 1..=3 {
            assert_eq!(a.subscribe(GridId(g)), Ok(true));
        }
        assert_eq!(a.subscribe(GridId(4)), Err(SubscribeError::TooMany(3)));
        assert_eq!(
            a.subscribe(GridId(3)),
            Ok(false),
            "a repeat is not a new one"
        );
        assert!(a.unsubscribe(GridId(1)));
        assert_eq!(a.subscribe(GridId(4)), Ok(true));
    }

    #[tokio::test]
    async fn broadcast_reaches_every_connection() {
        let hub = hub(8);
        let mut a = hub.connect();
        let mut idle = hub.connect();
        a.subscribe(GridId(1)).unwrap();
        assert_eq!(hub.broadcast(ev("resync")), 2);
        assert_eq!(a.recv().await.as_deref(), Some("resync"));
        assert_eq!(idle.recv().await.as_deref(), Some("resync"));
    }

    #[test]
    fn the_hub_is_send_sync_and_cheap_to_clone() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<Hub>();
        let hub = hub(1);
        let other = hub.clone();
        let _c = other.connect();
        assert_eq!(hub.connections(), 1);
    }
}
