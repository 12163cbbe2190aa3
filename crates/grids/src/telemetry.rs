//! What the network tells us about hardware: integration events are stored first (deduplicated),
//! then processed by workers; uplinks keep meters' and gateways' "last seen" current.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kernel::{DomainError, MeterId};

/// An event as received, before processing.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundEvent {
    pub source: &'static str,
    pub event_type: String,
    pub dedup_key: String,
    pub dev_eui: Option<String>,
    pub payload: serde_json::Value,
}

/// An event a worker has leased for processing.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedEvent {
    pub id: i64,
    /// Who sent it (`chirpstack`, `flutterwave`): decides which handler processes it.
    pub source: String,
    pub event_type: String,
    pub dev_eui: Option<String>,
    pub payload: serde_json::Value,
    /// Claims so far, this one included.
    pub attempts: i32,
    /// Of the earlier claims, how many ended in [`Inbox::retry_early`] (not errors).
    pub early_retries: i32,
    /// When it was stored: bounds how long an event that came too early is retried.
    pub received_at: DateTime<Utc>,
}

/// A durable inbox: a row is processed once even with several workers, and a crashed worker's
/// lease runs out so another picks the row up.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Inbox: Send + Sync {
    /// `false` when an event with the same key was stored before (a duplicate).
    async fn store(&self, event: InboundEvent) -> Result<bool, DomainError>;
    /// Leases up to `limit` due events for `lease_secs`, oldest first, skipping rows other
    /// workers hold.
    async fn claim(&self, limit: i64, lease_secs: i64) -> Result<Vec<ClaimedEvent>, DomainError>;
    async fn complete(&self, id: i64, outcome: String) -> Result<(), DomainError>;
    /// Leaves the event for another attempt after `after` (sub-second backoffs are kept), or
    /// gives up on it.
    async fn retry_later(
        &self,
        id: i64,
        error: String,
        after: chrono::Duration,
        give_up: bool,
    ) -> Result<(), DomainError>;
    /// Leaves an event that came too early (before what it is about) for another attempt after
    /// `after`, counting it in `early_retries`: such retries are not errors and leave the
    /// event's error budget whole.
    async fn retry_early(
        &self,
        id: i64,
        reason: String,
        after: chrono::Duration,
    ) -> Result<(), DomainError>;
}

/// A device was heard.
#[derive(Debug, Clone, PartialEq)]
pub struct Uplink {
    pub dev_eui: String,
    pub seen_at: DateTime<Utc>,
    pub rssi: Option<i32>,
    pub snr: Option<f64>,
    /// Gateway ids (lower-case hex) that heard it.
    pub gateways: Vec<String>,
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait TelemetryRepo: Send + Sync {
    /// Marks the meter with this DevEUI and the gateways as seen (never moving `last_seen_at`
    /// backwards) and announces the changes on their grid. `None` when no meter has the DevEUI.
    async fn record_uplink(&self, uplink: Uplink) -> Result<Option<MeterId>, DomainError>;
}
