//! Durable delivery (§2.5–2.13 redesigned on PostgreSQL): the interaction row is its own delivery
//! record. A worker claims the rows that want a downlink (per grid, highest priority first, at
//! most one per grid per pacing interval), encodes them with the meter's [`DeviceProtocol`],
//! hands them to the network server ([`DownlinkQueue`]) and records each stage with a deadline.
//! The network server's events (`txack`, `ack`, the meter's reply in an `up`) move the row on; a
//! deadline that passes is a failed attempt, triaged by [`on_delivery_failure`]: retry with
//! backoff, verify by reading the meter back, or fail.
//!
//! Every write is a compare-and-set on the row's attempt number and stage, so a late event, a
//! second worker or a worker that lost its lease cannot move a row twice.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use grids::vocab::{CommunicationProtocol, MeterPhase};
use kernel::{DomainError, GridId, MeterId, OrganizationId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::InteractionId;
use crate::kind::{InteractionType, Origin};
use crate::network::{Downlink, DownlinkQueue, NetworkError};
use crate::ports::{Clock, HistoryEntry, ShadowRepo};
use crate::retry::{Jitter, RetryPolicy};
use crate::shadow::{AttributeValue, MeterShadow, ReportedVia};
use crate::status::{InteractionStatus, Transition};
use crate::token::StsToken;
use crate::verify::{DeliveryFailure, FailureOutcome, on_delivery_failure, verdict};

/// A phase of a three-phase meter. Single-phase meters are read on phase A.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
pub enum Phase {
    A,
    B,
    C,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::A => "A",
            Phase::B => "B",
            Phase::C => "C",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "A" => Some(Phase::A),
            "B" => Some(Phase::B),
            "C" => Some(Phase::C),
            _ => None,
        }
    }

    fn next(self) -> Option<Self> {
        match self {
            Phase::A => Some(Phase::B),
            Phase::B => Some(Phase::C),
            Phase::C => None,
        }
    }
}

/// The phase a new send of `kind` starts on: three-phase meters read voltage and current on each
/// phase in turn (one downlink each); everything else is a single downlink.
pub fn first_phase(kind: InteractionType, meter_phase: MeterPhase) -> Option<Phase> {
    match (kind, meter_phase) {
        (InteractionType::ReadVoltage | InteractionType::ReadCurrent, MeterPhase::ThreePhase) => {
            Some(Phase::A)
        }
        _ => None,
    }
}

/// Where a row is on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeliveryStage {
    /// Claimed by a worker, being handed to the network server.
    Sending,
    /// The network server queued it (we hold its queue item id).
    DeliveredToNs,
    /// A gateway transmitted it (`txack`); the meter's answer is awaited.
    SentToDevice,
}

impl DeliveryStage {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStage::Sending => "SENDING",
            DeliveryStage::DeliveredToNs => "DELIVERED_TO_NS",
            DeliveryStage::SentToDevice => "SENT_TO_DEVICE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "SENDING" => Some(DeliveryStage::Sending),
            "DELIVERED_TO_NS" => Some(DeliveryStage::DeliveredToNs),
            "SENT_TO_DEVICE" => Some(DeliveryStage::SentToDevice),
            _ => None,
        }
    }
}

/// An interaction as the delivery worker sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: InteractionId,
    pub organization_id: OrganizationId,
    pub grid_id: GridId,
    pub meter_id: MeterId,
    pub kind: InteractionType,
    pub origin: Origin,
    pub status: InteractionStatus,
    pub priority: i32,
    /// The compare-and-set token: sends so far (this one included, once claimed).
    pub attempt: i32,
    pub retries: i32,
    pub stage: Option<DeliveryStage>,
    pub phase: Option<Phase>,
    /// What earlier phases of a three-phase read observed.
    pub phase_results: BTreeMap<Phase, Vec<AttributeValue>>,
    pub token: Option<StsToken>,
    pub power_limit_w: Option<i32>,
    pub energy_wh: Option<i64>,
    pub intended: Option<AttributeValue>,
    pub protocol: CommunicationProtocol,
    pub meter_phase: MeterPhase,
    pub external_reference: String,
    pub dev_eui: Option<String>,
    /// The grid's IANA timezone: meter clocks run on local time.
    pub timezone: String,
    pub sent_at: Option<DateTime<Utc>>,
}

/// What a meter's uplink says.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceReply {
    /// Sent by the meter on its own (the hourly report).
    Report { observations: Vec<AttributeValue> },
    /// An answer to a request.
    Answer { to: AnswerTo, outcome: ReplyOutcome },
}

/// Which requests an answer can belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerTo {
    /// A read's answer: of this type (and phase), or any read when `kind` is `None` (a refusal).
    Read {
        kind: Option<InteractionType>,
        phase: Option<Phase>,
    },
    /// A relay or clock write.
    Write,
    /// A token delivery.
    Token,
}

impl AnswerTo {
    pub fn answers(self, kind: InteractionType, phase: Option<Phase>) -> bool {
        use crate::kind::Category;
        match self {
            AnswerTo::Read { kind: None, .. } => kind.category() == Category::Read,
            AnswerTo::Read {
                kind: Some(k),
                phase: p,
            } => k == kind && (p.is_none() || phase.is_none() || p == phase),
            AnswerTo::Write => matches!(
                kind,
                InteractionType::TurnOn
                    | InteractionType::TurnOff
                    | InteractionType::SetDate
                    | InteractionType::SetTime
            ),
            AnswerTo::Token => kind.category() == Category::Token,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ReplyOutcome {
    /// Executed; what it observed (reads) or nothing (writes, tokens).
    Executed { observations: Vec<AttributeValue> },
    /// The meter refused.
    Refused {
        reason: String,
        code: Option<String>,
    },
}

/// Encodes and decodes a meter protocol's frames (CALIN LoRaWAN: the `lorawan` crate).
pub trait DeviceProtocol: Send + Sync {
    /// The downlink for the delivery's current phase. `Err` when it cannot be encoded (an
    /// unsupported type, a malformed serial): a permanent failure.
    fn downlink(&self, delivery: &Delivery, now: DateTime<Utc>) -> Result<Downlink, String>;
    /// Decodes an uplink payload.
    fn uplink(&self, data: &[u8]) -> Result<DeviceReply, String>;
}

/// How a failed attempt is recorded.
#[derive(Debug, Clone, PartialEq)]
pub enum FailurePlan {
    /// Back to waiting: sent again at `at` (still PROCESSING, parked).
    Retry { at: DateTime<Utc> },
    /// VERIFYING, decided by a read of this type (a queued read of that type is reused).
    Verify {
        read: InteractionType,
        read_priority: i32,
        read_expires_at: DateTime<Utc>,
    },
    /// FAILED (`transition` is `Rejected` or `DeliveryFailed { retryable: false }`).
    Fail { transition: Transition },
}

/// What a claimed send answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Completion {
    /// Another phase to send: back to waiting at once.
    NextPhase {
        phase: Phase,
        observed: Vec<AttributeValue>,
    },
    /// Finished: SUCCESSFUL with what the meter reported.
    Succeeded {
        observations: Vec<AttributeValue>,
        result: serde_json::Value,
    },
}

/// Storage for delivery. Every write is a compare-and-set on `(id, attempt)` and the expected
/// stage, and answers whether it applied.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait DeliveryRepo: Send + Sync {
    /// Claims up to `lanes` rows, at most one per grid whose pacing interval has passed, the
    /// highest priority first: QUEUED → PROCESSING (or a parked PROCESSING row), stage SENDING
    /// until `lease_until`, attempt + 1, the grid's next send pushed `pacing` ahead. Reads past
    /// their TTL are moved to EXPIRED instead and never sent.
    async fn claim(
        &self,
        lanes: i64,
        pacing: Duration,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<Delivery>, DomainError>;

    /// SENDING → DELIVERED_TO_NS with the network server's id, until `deadline`.
    async fn handed_over(
        &self,
        id: InteractionId,
        attempt: i32,
        queue_item_id: &str,
        deadline: DateTime<Utc>,
    ) -> Result<bool, DomainError>;

    /// DELIVERED_TO_NS → SENT_TO_DEVICE (a gateway transmitted it), until `deadline`.
    async fn transmitted(
        &self,
        queue_item_id: &str,
        deadline: DateTime<Utc>,
    ) -> Result<Option<Delivery>, DomainError>;

    /// The row a queue item id belongs to, if it is still on the wire.
    async fn by_queue_item(&self, queue_item_id: &str) -> Result<Option<Delivery>, DomainError>;

    /// Records the device's acknowledgement (`ack` with acknowledged = true). Answers whether a
    /// row on the wire carries the queue item id.
    async fn acknowledged(&self, queue_item_id: &str) -> Result<bool, DomainError>;

    /// Where a queue item id stands, for an event about it that moved nothing: read in one
    /// snapshot, so a hand-over recorded meanwhile shows either as the row or as in flight.
    async fn trace_queue_item(
        &self,
        queue_item_id: &str,
        event_received_at: DateTime<Utc>,
    ) -> Result<QueueItemTrace, DomainError>;

    /// The meter's rows on the wire (DELIVERED_TO_NS or SENT_TO_DEVICE), oldest send first.
    async fn on_the_wire(&self, meter: MeterId) -> Result<Vec<Delivery>, DomainError>;

    /// Rows on the wire whose stage deadline passed before `now`.
    async fn overdue(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<Delivery>, DomainError>;

    /// Records a failed attempt as planned. Answers the new status (`None`: the row moved on).
    async fn failed(
        &self,
        delivery: &Delivery,
        plan: FailurePlan,
        history: HistoryEntry,
    ) -> Result<Option<InteractionStatus>, DomainError>;

    /// Records a successful attempt. Answers whether it applied.
    async fn completed(
        &self,
        delivery: &Delivery,
        completion: Completion,
    ) -> Result<bool, DomainError>;

    /// Commands in VERIFYING that wait for `read`, or for any read of `meter` when `read` is
    /// `None` (an unsolicited report may settle them).
    async fn verifying(
        &self,
        meter: MeterId,
        read: Option<InteractionId>,
    ) -> Result<Vec<Delivery>, DomainError>;

    /// VERIFYING commands whose verification read has finished (a crash between the read and the
    /// verdict leaves these): each with the read's status and observations.
    async fn verifications_due(
        &self,
        limit: i64,
    ) -> Result<Vec<(Delivery, InteractionStatus, Vec<AttributeValue>)>, DomainError>;

    /// Applies a verdict to a VERIFYING command.
    async fn settle(
        &self,
        id: InteractionId,
        transition: Transition,
        history: HistoryEntry,
    ) -> Result<Option<InteractionStatus>, DomainError>;
}

/// Which network server event about a queue item is being placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueItemEvent {
    /// `txack`: a gateway transmitted the downlink.
    Transmitted,
    /// `ack`: the device acknowledged the downlink (or did not).
    Acknowledgement,
}

/// Where a queue item id stands when an event about it moved nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueItemTrace {
    /// The stage of the row on the wire that carries the id, if one does.
    pub stage: Option<DeliveryStage>,
    /// A row claimed before the event was received is still SENDING: its hand-over (and so its
    /// queue item id) may not be recorded yet.
    pub hand_over_in_flight: bool,
}

/// Why an event about a queue item moved nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unapplied {
    /// Late or duplicate: the row moved past what the event reports, or no row carries the id
    /// and none can come to carry it.
    AlreadyPast,
    /// Too early: the event may belong to a hand-over that is not recorded yet.
    NotYetHandedOver,
}

/// Places an event that moved nothing (§2.9). ChirpStack assigns the queue item id in its answer
/// to the enqueue, so the id can only be recorded after the call returns, and a fast `txack` can
/// be processed first; the claim commits SENDING before the call, so an id that no row carries
/// can still become ours only while a row claimed before the event is SENDING.
pub fn place_unapplied(event: QueueItemEvent, trace: QueueItemTrace) -> Unapplied {
    match (event, trace.stage) {
        (QueueItemEvent::Transmitted, Some(DeliveryStage::SentToDevice)) => Unapplied::AlreadyPast,
        // The hand-over was recorded between the write that missed and this read: try again.
        (
            QueueItemEvent::Transmitted,
            Some(DeliveryStage::Sending | DeliveryStage::DeliveredToNs),
        )
        | (QueueItemEvent::Acknowledgement, Some(_)) => Unapplied::NotYetHandedOver,
        (_, None) if trace.hand_over_in_flight => Unapplied::NotYetHandedOver,
        (_, None) => Unapplied::AlreadyPast,
    }
}

/// How an event that came too early is retried: `first` doubling up to `max` between attempts,
/// for at most `window` after the event was received (wall time, not attempts, bounds it: a
/// lease running out or a slow inbox must not stretch it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EarlyEventRetry {
    pub first: Duration,
    pub max: Duration,
    pub window: Duration,
}

impl Default for EarlyEventRetry {
    fn default() -> Self {
        Self {
            first: Duration::milliseconds(200),
            max: Duration::seconds(5),
            window: Duration::seconds(30),
        }
    }
}

impl EarlyEventRetry {
    /// The wait before attempt `attempt + 1` (`attempt` counts from 1), or `None` once the
    /// window since `received_at` is over.
    pub fn retry_in(
        &self,
        received_at: DateTime<Utc>,
        now: DateTime<Utc>,
        attempt: u32,
    ) -> Option<Duration> {
        let left = received_at + self.window - now;
        if left <= Duration::zero() {
            return None;
        }
        let doubled = self
            .first
            .checked_mul(1_i32 << attempt.saturating_sub(1).min(20))
            .unwrap_or(self.max);
        Some(doubled.min(self.max).min(left))
    }
}

/// When and how often an inbound event has been seen (for retries of early events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventReceipt {
    pub received_at: DateTime<Utc>,
    /// Attempts at processing it, this one included.
    pub attempt: u32,
}

/// What an event about a queue item (`txack`, `ack`) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    /// It moved its row (or was recorded on it).
    Applied,
    /// Late or duplicate: dropped.
    AlreadyPast,
    /// Too early: process it again after `retry_in`.
    NotYetHandedOver { retry_in: Duration },
    /// Too early for the whole retry window: dropped as matching nothing.
    Unmatched,
}

/// Timings of the stages (§2.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryTimings {
    /// At most one downlink per grid this often (ADR-001: 2 s).
    pub pacing: Duration,
    /// A claimed row is reserved this long for the network server call (longer than its timeout).
    pub lease: Duration,
    /// Queued on the network server but not transmitted by a gateway (15 min).
    pub transmit_timeout: Duration,
    /// Transmitted, no answer from the meter (12 s).
    pub reply_timeout: Duration,
    /// A verification read is dropped if it cannot be sent within this.
    pub read_ttl: Duration,
    /// A `txack`/`ack` processed before its hand-over was recorded is retried this way.
    pub early_events: EarlyEventRetry,
}

impl Default for DeliveryTimings {
    fn default() -> Self {
        Self {
            pacing: Duration::seconds(2),
            lease: Duration::seconds(20),
            transmit_timeout: Duration::minutes(15),
            reply_timeout: Duration::seconds(12),
            read_ttl: Duration::minutes(30),
            early_events: EarlyEventRetry::default(),
        }
    }
}

/// Counts of one delivery pass, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassReport {
    pub sent: usize,
    pub failed: usize,
}

/// The delivery pipeline: sending, events from the network server, timeouts, verification.
#[derive(Clone)]
pub struct DeliveryService {
    repo: Arc<dyn DeliveryRepo>,
    shadows: Arc<dyn ShadowRepo>,
    queue: Arc<dyn DownlinkQueue>,
    protocol: Arc<dyn DeviceProtocol>,
    clock: Arc<dyn Clock>,
    jitter: Arc<Mutex<dyn Jitter + Send>>,
    retry: RetryPolicy,
    timings: DeliveryTimings,
}

impl DeliveryService {
    pub fn new(
        repo: Arc<dyn DeliveryRepo>,
        shadows: Arc<dyn ShadowRepo>,
        queue: Arc<dyn DownlinkQueue>,
        protocol: Arc<dyn DeviceProtocol>,
        clock: Arc<dyn Clock>,
        jitter: Arc<Mutex<dyn Jitter + Send>>,
    ) -> Self {
        Self {
            repo,
            shadows,
            queue,
            protocol,
            clock,
            jitter,
            retry: RetryPolicy::default(),
            timings: DeliveryTimings::default(),
        }
    }

    pub fn with_timings(mut self, timings: DeliveryTimings) -> Self {
        self.timings = timings;
        self
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn timings(&self) -> DeliveryTimings {
        self.timings
    }

    /// Claims what is due on up to `lanes` grids and hands it to the network server.
    pub async fn send_due(&self, lanes: i64) -> Result<PassReport, DomainError> {
        let now = self.clock.now();
        let claimed = self
            .repo
            .claim(lanes, self.timings.pacing, now + self.timings.lease)
            .await?;
        let mut report = PassReport::default();
        for delivery in claimed {
            if self.send(&delivery).await? {
                report.sent += 1;
            } else {
                report.failed += 1;
            }
        }
        Ok(report)
    }

    async fn send(&self, d: &Delivery) -> Result<bool, DomainError> {
        let now = self.clock.now();
        let downlink = match self.protocol.downlink(d, now) {
            Ok(downlink) => downlink,
            Err(reason) => {
                let failure = DeliveryFailure::NotDelivered { retryable: false };
                self.fail(d, failure, format!("cannot encode: {reason}"), None)
                    .await?;
                return Ok(false);
            }
        };
        match self.queue.enqueue(downlink).await {
            Ok(queue_item) => {
                let deadline = self.clock.now() + self.timings.transmit_timeout;
                self.repo
                    .handed_over(d.id, d.attempt, &queue_item, deadline)
                    .await?;
                Ok(true)
            }
            Err(e) => {
                let code = match &e {
                    NetworkError::Permanent { code, .. } => code.clone(),
                    NetworkError::Transient(_) => Some("network_server_unavailable".into()),
                };
                let failure = DeliveryFailure::NotDelivered {
                    retryable: e.is_retryable(),
                };
                self.fail(d, failure, e.to_string(), code).await?;
                Ok(false)
            }
        }
    }

    /// Triage of a failed attempt, then its record. Answers the new status.
    pub async fn fail(
        &self,
        d: &Delivery,
        failure: DeliveryFailure,
        reason: String,
        code: Option<String>,
    ) -> Result<Option<InteractionStatus>, DomainError> {
        let now = self.clock.now();
        let outcome = {
            let mut jitter = self
                .jitter
                .lock()
                .map_err(|_| DomainError::Internal("the retry jitter lock is poisoned".into()))?;
            on_delivery_failure(
                d.kind,
                d.protocol,
                failure,
                u32::try_from(d.retries).unwrap_or(0),
                &self.retry,
                now,
                &mut *jitter,
            )
        };
        let plan = match outcome {
            FailureOutcome::Retry { at, .. } => FailurePlan::Retry { at },
            FailureOutcome::Verify { read } => FailurePlan::Verify {
                read,
                read_priority: d.priority,
                read_expires_at: now + self.timings.read_ttl,
            },
            FailureOutcome::Fail => FailurePlan::Fail {
                transition: outcome.transition(failure),
            },
        };
        let (status_after, is_final, detail) = match &plan {
            FailurePlan::Retry { at } => (
                InteractionStatus::Processing,
                false,
                format!("; retry {} at {}", d.retries + 1, at.to_rfc3339()),
            ),
            FailurePlan::Verify { read, .. } => (
                InteractionStatus::Verifying,
                false,
                format!("; verifying with {read}"),
            ),
            FailurePlan::Fail { .. } => (InteractionStatus::Failed, true, String::new()),
        };
        let history = HistoryEntry {
            at: now,
            status: status_after,
            reason: format!("{reason}{detail}"),
            code,
            is_final,
        };
        let moved = self.repo.failed(d, plan, history).await?;
        if moved == Some(InteractionStatus::Failed) {
            self.finished(d).await?;
        }
        Ok(moved)
    }

    /// `txack`: a gateway transmitted the downlink; the answer is due within the reply timeout.
    pub async fn on_transmitted(
        &self,
        queue_item_id: &str,
        receipt: EventReceipt,
    ) -> Result<EventOutcome, DomainError> {
        let deadline = self.clock.now() + self.timings.reply_timeout;
        if self
            .repo
            .transmitted(queue_item_id, deadline)
            .await?
            .is_some()
        {
            return Ok(EventOutcome::Applied);
        }
        self.unapplied(QueueItemEvent::Transmitted, queue_item_id, receipt)
            .await
    }

    /// `ack`: the device acknowledged the confirmed downlink (or did not). A missing
    /// acknowledgement does not prove the command was lost: it is triaged as unconfirmed.
    pub async fn on_acknowledgement(
        &self,
        queue_item_id: &str,
        acknowledged: bool,
        receipt: EventReceipt,
    ) -> Result<EventOutcome, DomainError> {
        if acknowledged {
            if self.repo.acknowledged(queue_item_id).await? {
                return Ok(EventOutcome::Applied);
            }
        } else if let Some(d) = self.repo.by_queue_item(queue_item_id).await? {
            self.fail(
                &d,
                DeliveryFailure::Unconfirmed,
                "the device did not acknowledge the downlink".into(),
                Some("not_acknowledged".into()),
            )
            .await?;
            return Ok(EventOutcome::Applied);
        }
        self.unapplied(QueueItemEvent::Acknowledgement, queue_item_id, receipt)
            .await
    }

    /// An event that moved nothing: late or duplicate (dropped), or too early (retried within
    /// the window, then dropped as unmatched).
    async fn unapplied(
        &self,
        event: QueueItemEvent,
        queue_item_id: &str,
        receipt: EventReceipt,
    ) -> Result<EventOutcome, DomainError> {
        let trace = self
            .repo
            .trace_queue_item(queue_item_id, receipt.received_at)
            .await?;
        Ok(match place_unapplied(event, trace) {
            Unapplied::AlreadyPast => EventOutcome::AlreadyPast,
            Unapplied::NotYetHandedOver => match self.timings.early_events.retry_in(
                receipt.received_at,
                self.clock.now(),
                receipt.attempt,
            ) {
                Some(retry_in) => EventOutcome::NotYetHandedOver { retry_in },
                None => EventOutcome::Unmatched,
            },
        })
    }

    /// An uplink from a meter: a report updates its shadow; an answer completes the request it
    /// answers (the oldest on the wire that it can answer). Answers what it did, for the inbox.
    pub async fn on_uplink(
        &self,
        meter: MeterId,
        data: &[u8],
        at: DateTime<Utc>,
    ) -> Result<String, DomainError> {
        let reply = match self.protocol.uplink(data) {
            Ok(reply) => reply,
            Err(e) => return Ok(format!("undecodable uplink: {e}")),
        };
        match reply {
            DeviceReply::Report { observations } => {
                self.record_readings(meter, None, &observations, at).await?;
                self.settle_by_report(meter).await?;
                Ok(format!("report: {} values", observations.len()))
            }
            DeviceReply::Answer { to, outcome } => {
                let wire = self.repo.on_the_wire(meter).await?;
                let Some(d) = wire.into_iter().find(|d| to.answers(d.kind, d.phase)) else {
                    return Ok("an answer to nothing on the wire (late or duplicate)".into());
                };
                match outcome {
                    ReplyOutcome::Executed { observations } => {
                        self.complete(&d, observations, at).await?;
                        Ok(format!("interaction {} answered", d.id.get()))
                    }
                    ReplyOutcome::Refused { reason, code } => {
                        self.fail(
                            &d,
                            DeliveryFailure::Rejected,
                            format!("the meter refused: {reason}"),
                            code,
                        )
                        .await?;
                        Ok(format!("interaction {} refused", d.id.get()))
                    }
                }
            }
        }
    }

    async fn complete(
        &self,
        d: &Delivery,
        observed: Vec<AttributeValue>,
        at: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        let mut phases = d.phase_results.clone();
        let completion = match d.phase {
            Some(phase) => {
                phases.insert(phase, observed.clone());
                match phase.next() {
                    Some(next) => Completion::NextPhase {
                        phase: next,
                        observed,
                    },
                    None => {
                        let observations = aggregate_phases(&phases);
                        Completion::Succeeded {
                            result: result_json(&observations, Some(&phases)),
                            observations,
                        }
                    }
                }
            }
            None => Completion::Succeeded {
                result: result_json(&observed, None),
                observations: observed,
            },
        };
        if !self.repo.completed(d, completion.clone()).await? {
            return Ok(());
        }
        if let Completion::Succeeded { observations, .. } = completion {
            self.record_readings(d.meter_id, Some(d), &observations, at)
                .await?;
            self.settle_verifications(
                d.meter_id,
                d.id,
                InteractionStatus::Successful,
                &observations,
            )
            .await?;
        }
        Ok(())
    }

    /// A finished row (not successful) no longer carries an intent; a read that failed leaves
    /// the commands it was verifying unverifiable.
    async fn finished(&self, d: &Delivery) -> Result<(), DomainError> {
        self.update_shadow(d.meter_id, |s| s.interaction_finished(d.id))
            .await?;
        self.settle_verifications(d.meter_id, d.id, InteractionStatus::Failed, &[])
            .await
    }

    async fn record_readings(
        &self,
        meter: MeterId,
        d: Option<&Delivery>,
        observations: &[AttributeValue],
        at: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        self.update_shadow(meter, |s| match d {
            Some(d) => s.apply_success(d.id, d.intended.as_ref(), observations, at),
            None => {
                for v in observations {
                    s.apply_reading(v.clone(), ReportedVia::Report, at);
                }
            }
        })
        .await
    }

    async fn update_shadow(
        &self,
        meter: MeterId,
        change: impl Fn(&mut MeterShadow),
    ) -> Result<(), DomainError> {
        for _ in 0..5 {
            let stored = self.shadows.get(meter).await?;
            let loaded = stored.as_ref().map_or(0, |s| s.version);
            let mut shadow = stored.unwrap_or_else(|| MeterShadow::new(meter));
            change(&mut shadow);
            if shadow.version == loaded {
                return Ok(());
            }
            match self.shadows.save(shadow, loaded).await {
                Ok(()) => return Ok(()),
                Err(DomainError::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(DomainError::Conflict(format!(
            "the shadow of meter {} kept changing",
            meter.get()
        )))
    }

    /// The read `read` finished: the commands it verifies get their verdict.
    async fn settle_verifications(
        &self,
        meter: MeterId,
        read: InteractionId,
        read_status: InteractionStatus,
        observations: &[AttributeValue],
    ) -> Result<(), DomainError> {
        for cmd in self.repo.verifying(meter, Some(read)).await? {
            self.apply_verdict(&cmd, read_status, observations).await?;
        }
        Ok(())
    }

    async fn apply_verdict(
        &self,
        cmd: &Delivery,
        read_status: InteractionStatus,
        observations: &[AttributeValue],
    ) -> Result<(), DomainError> {
        let Some(intended) = &cmd.intended else {
            return Ok(());
        };
        let Some(transition) = verdict(intended, read_status, observations) else {
            return Ok(());
        };
        let reason = match transition {
            Transition::VerificationMatched => "verified: the meter reports the intended value",
            Transition::VerificationMismatched => {
                "verification failed: the meter reports another value"
            }
            _ => "unverifiable: the verification read did not succeed",
        };
        self.settle(cmd, transition, reason).await
    }

    async fn settle(
        &self,
        cmd: &Delivery,
        transition: Transition,
        reason: &str,
    ) -> Result<(), DomainError> {
        let now = self.clock.now();
        let to = InteractionStatus::Verifying
            .apply(transition)
            .map_err(|e| DomainError::Internal(e.to_string()))?;
        let history = HistoryEntry {
            at: now,
            status: to,
            reason: reason.into(),
            code: Some(
                match transition {
                    Transition::VerificationMatched => "verified",
                    Transition::VerificationMismatched => "verification_mismatch",
                    _ => "unverifiable",
                }
                .into(),
            ),
            is_final: true,
        };
        if self.repo.settle(cmd.id, transition, history).await? == Some(to) {
            let intended = cmd.intended.clone();
            self.update_shadow(cmd.meter_id, |s| {
                if to == InteractionStatus::Successful {
                    s.apply_success(cmd.id, intended.as_ref(), &[], now);
                } else {
                    s.interaction_finished(cmd.id);
                }
            })
            .await?;
        }
        Ok(())
    }

    /// A report can settle a VERIFYING command when it shows the intended value after the send.
    async fn settle_by_report(&self, meter: MeterId) -> Result<(), DomainError> {
        let verifying = self.repo.verifying(meter, None).await?;
        if verifying.is_empty() {
            return Ok(());
        }
        let Some(shadow) = self.shadows.get(meter).await? else {
            return Ok(());
        };
        for cmd in verifying {
            let (Some(intended), Some(sent_at)) = (&cmd.intended, cmd.sent_at) else {
                continue;
            };
            if let Some(t) = crate::verify::settled_by_shadow(&shadow, intended, sent_at) {
                self.settle(&cmd, t, "verified by the meter's report")
                    .await?;
            }
        }
        Ok(())
    }

    /// Timeouts: rows whose stage deadline passed, and verifications whose read finished
    /// without a verdict being recorded. Answers how many rows it moved.
    pub async fn reap(&self, limit: i64) -> Result<usize, DomainError> {
        let now = self.clock.now();
        let mut moved = 0;
        for d in self.repo.overdue(now, limit).await? {
            let reason = match d.stage {
                Some(DeliveryStage::Sending) => {
                    "the worker sending it stopped before the network server answered"
                }
                Some(DeliveryStage::DeliveredToNs) => "no gateway transmitted it in time",
                Some(DeliveryStage::SentToDevice) | None => "the meter did not answer in time",
            };
            if self
                .fail(
                    &d,
                    DeliveryFailure::Unconfirmed,
                    reason.into(),
                    Some("timeout".into()),
                )
                .await?
                .is_some()
            {
                moved += 1;
            }
        }
        for (cmd, status, observations) in self.repo.verifications_due(limit).await? {
            self.apply_verdict(&cmd, status, &observations).await?;
            moved += 1;
        }
        Ok(moved)
    }
}

/// Three-phase reads: voltage and current are the mean over phases, power the sum.
fn aggregate_phases(phases: &BTreeMap<Phase, Vec<AttributeValue>>) -> Vec<AttributeValue> {
    let mut voltage = Vec::new();
    let mut current = Vec::new();
    let mut power = Vec::new();
    let mut other = Vec::new();
    for v in phases.values().flatten() {
        match v {
            AttributeValue::Voltage(x) => voltage.push(*x),
            AttributeValue::Current(x) => current.push(*x),
            AttributeValue::Power(x) => power.push(*x),
            _ => other.push(v.clone()),
        }
    }
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    let round = |x: f64| (x * 10.0).round() / 10.0;
    let mut out = other;
    if !voltage.is_empty() {
        out.push(AttributeValue::Voltage(round(mean(&voltage))));
    }
    if !current.is_empty() {
        out.push(AttributeValue::Current(round(mean(&current))));
    }
    if !power.is_empty() {
        out.push(AttributeValue::Power(round(power.iter().sum())));
    }
    out
}

fn result_json(
    observations: &[AttributeValue],
    phases: Option<&BTreeMap<Phase, Vec<AttributeValue>>>,
) -> serde_json::Value {
    let mut v = serde_json::json!({ "observations": observations });
    if let Some(p) = phases {
        v["phases"] = serde_json::to_value(p).unwrap_or_default();
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_phase_reads_fan_out_and_aggregate() {
        assert_eq!(
            first_phase(InteractionType::ReadVoltage, MeterPhase::ThreePhase),
            Some(Phase::A)
        );
        assert_eq!(
            first_phase(InteractionType::ReadVoltage, MeterPhase::SinglePhase),
            None
        );
        assert_eq!(
            first_phase(InteractionType::ReadPower, MeterPhase::ThreePhase),
            None
        );
        assert_eq!(Phase::A.next(), Some(Phase::B));
        assert_eq!(Phase::C.next(), None);
        let mut phases = BTreeMap::new();
        phases.insert(Phase::A, vec![AttributeValue::Voltage(230.0)]);
        phases.insert(Phase::B, vec![AttributeValue::Voltage(231.0)]);
        phases.insert(Phase::C, vec![AttributeValue::Voltage(232.5)]);
        assert_eq!(
            aggregate_phases(&phases),
            vec![AttributeValue::Voltage(231.2)]
        );
    }

    #[test]
    fn answers_match_their_requests() {
        let read_a = AnswerTo::Read {
            kind: Some(InteractionType::ReadVoltage),
            phase: Some(Phase::A),
        };
        assert!(read_a.answers(InteractionType::ReadVoltage, Some(Phase::A)));
        assert!(read_a.answers(InteractionType::ReadVoltage, None));
        assert!(!read_a.answers(InteractionType::ReadVoltage, Some(Phase::B)));
        assert!(!read_a.answers(InteractionType::ReadCredit, None));
        let any_read = AnswerTo::Read {
            kind: None,
            phase: None,
        };
        assert!(any_read.answers(InteractionType::ReadCredit, None));
        assert!(!any_read.answers(InteractionType::TurnOff, None));
        assert!(AnswerTo::Write.answers(InteractionType::TurnOff, None));
        assert!(!AnswerTo::Write.answers(InteractionType::TopUp, None));
        assert!(AnswerTo::Token.answers(InteractionType::TopUp, None));
        assert!(AnswerTo::Token.answers(InteractionType::DeliverPreexistingToken, None));
    }

    #[test]
    fn stages_round_trip() {
        for s in [
            DeliveryStage::Sending,
            DeliveryStage::DeliveredToNs,
            DeliveryStage::SentToDevice,
        ] {
            assert_eq!(DeliveryStage::parse(s.as_str()), Some(s));
        }
        assert_eq!(DeliveryStage::parse("nope"), None);
        for p in [Phase::A, Phase::B, Phase::C] {
            assert_eq!(Phase::parse(p.as_str()), Some(p));
        }
    }

    fn trace(stage: Option<DeliveryStage>, in_flight: bool) -> QueueItemTrace {
        QueueItemTrace {
            stage,
            hand_over_in_flight: in_flight,
        }
    }

    #[test]
    fn an_event_that_moved_nothing_is_early_only_while_a_hand_over_can_still_record_it() {
        use QueueItemEvent::{Acknowledgement, Transmitted};
        use Unapplied::{AlreadyPast, NotYetHandedOver};
        // The row already took a txack: a second one is a duplicate, whatever else is sending.
        for in_flight in [false, true] {
            assert_eq!(
                place_unapplied(
                    Transmitted,
                    trace(Some(DeliveryStage::SentToDevice), in_flight)
                ),
                AlreadyPast
            );
        }
        // The hand-over was recorded between the write that missed and the read.
        assert_eq!(
            place_unapplied(
                Transmitted,
                trace(Some(DeliveryStage::DeliveredToNs), false)
            ),
            NotYetHandedOver
        );
        assert_eq!(
            place_unapplied(
                Acknowledgement,
                trace(Some(DeliveryStage::SentToDevice), false)
            ),
            NotYetHandedOver
        );
        // No row carries the id: early while a hand-over is in flight, late otherwise.
        for event in [Transmitted, Acknowledgement] {
            assert_eq!(place_unapplied(event, trace(None, true)), NotYetHandedOver);
            assert_eq!(place_unapplied(event, trace(None, false)), AlreadyPast);
        }
    }

    #[test]
    fn early_events_back_off_doubling_within_the_window_from_receipt() {
        let retry = EarlyEventRetry::default();
        let received = DateTime::parse_from_rfc3339("2026-11-27T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = |ms: i64| received + Duration::milliseconds(ms);
        assert_eq!(
            retry.retry_in(received, at(10), 1),
            Some(Duration::milliseconds(200))
        );
        assert_eq!(
            retry.retry_in(received, at(300), 2),
            Some(Duration::milliseconds(400))
        );
        assert_eq!(
            retry.retry_in(received, at(1_000), 4),
            Some(Duration::milliseconds(1_600))
        );
        // Capped, and never past the end of the window.
        assert_eq!(
            retry.retry_in(received, at(10_000), 9),
            Some(Duration::seconds(5))
        );
        assert_eq!(
            retry.retry_in(received, at(29_000), 12),
            Some(Duration::seconds(1))
        );
        assert_eq!(
            retry.retry_in(received, at(500), 400),
            Some(Duration::seconds(5))
        );
        // Time since receipt ends it, not the number of attempts.
        assert_eq!(retry.retry_in(received, at(30_000), 1), None);
        assert_eq!(retry.retry_in(received, at(45_000), 2), None);
    }

    struct NoProtocol;

    impl DeviceProtocol for NoProtocol {
        fn downlink(&self, _: &Delivery, _: DateTime<Utc>) -> Result<Downlink, String> {
            Err("not in these tests".into())
        }
        fn uplink(&self, _: &[u8]) -> Result<DeviceReply, String> {
            Err("not in these tests".into())
        }
    }

    struct At(DateTime<Utc>);

    impl Clock for At {
        fn now(&self) -> DateTime<Utc> {
            self.0
        }
    }

    fn service_at(repo: MockDeliveryRepo, now: DateTime<Utc>) -> DeliveryService {
        DeliveryService::new(
            Arc::new(repo),
            Arc::new(crate::ports::MockShadowRepo::new()),
            Arc::new(crate::network::MockDownlinkQueue::new()),
            Arc::new(NoProtocol),
            Arc::new(At(now)),
            Arc::new(Mutex::new(crate::retry::FixedJitter(0.0))),
        )
    }

    #[tokio::test]
    async fn a_txack_is_applied_retried_or_dropped_by_where_its_queue_item_stands() {
        let received = DateTime::parse_from_rfc3339("2026-11-27T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let receipt = |attempt| EventReceipt {
            received_at: received,
            attempt,
        };
        // `transmitted` moves nothing in each case: the trace decides.
        let outcome = |t: QueueItemTrace, now_ms: i64, attempt: u32| {
            let mut repo = MockDeliveryRepo::new();
            repo.expect_transmitted().returning(|_, _| Ok(None));
            repo.expect_trace_queue_item()
                .withf(move |id, at| id == "q-1" && *at == received)
                .returning(move |_, _| Ok(t));
            let d = service_at(repo, received + Duration::milliseconds(now_ms));
            async move { d.on_transmitted("q-1", receipt(attempt)).await.unwrap() }
        };
        // Nothing carries the id yet but a hand-over is in flight: retried, then given up.
        assert_eq!(
            outcome(trace(None, true), 50, 1).await,
            EventOutcome::NotYetHandedOver {
                retry_in: Duration::milliseconds(200)
            }
        );
        assert_eq!(
            outcome(trace(None, true), 31_000, 9).await,
            EventOutcome::Unmatched
        );
        // A duplicate after the row moved on is dropped at once, even early in the window.
        assert_eq!(
            outcome(trace(Some(DeliveryStage::SentToDevice), true), 50, 1).await,
            EventOutcome::AlreadyPast
        );
        assert_eq!(
            outcome(trace(None, false), 50, 1).await,
            EventOutcome::AlreadyPast
        );
    }

    #[tokio::test]
    async fn an_applied_acknowledgement_reads_no_trace() {
        let now = Utc::now();
        let mut repo = MockDeliveryRepo::new();
        repo.expect_acknowledged().times(1).returning(|_| Ok(true));
        repo.expect_trace_queue_item().never();
        let d = service_at(repo, now);
        let receipt = EventReceipt {
            received_at: now,
            attempt: 1,
        };
        assert_eq!(
            d.on_acknowledgement("q-2", true, receipt).await.unwrap(),
            EventOutcome::Applied
        );
    }
}

/// Where an interaction's delivery stands (`GET /interactions/{id}/delivery`).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DeliveryStatus {
    pub interaction_id: InteractionId,
    pub status: InteractionStatus,
    /// On the wire: which stage, until when.
    pub stage: Option<DeliveryStage>,
    pub stage_deadline: Option<DateTime<Utc>>,
    /// Waiting for a retry (or the next phase) until then.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Downlinks sent (every phase and retry).
    pub attempts: i32,
    pub retries: i32,
    pub phase: Option<Phase>,
    /// The network server's id for the downlink on the wire.
    pub queue_item_id: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
    /// When the device acknowledged the downlink on the wire.
    pub acked_at: Option<DateTime<Utc>>,
    /// VERIFYING: the read that decides it.
    pub verified_by: Option<InteractionId>,
    /// What the meter answered, once successful.
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    /// Delivery and status history, newest first.
    pub history: Vec<HistoryEntry>,
}

/// The delivery read model.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait DeliveryQueries: Send + Sync {
    async fn delivery_status(
        &self,
        scope: kernel::TenantScope,
        id: InteractionId,
    ) -> Result<Option<DeliveryStatus>, DomainError>;
}

/// Reads delivery status with the caller's permissions and tenancy.
#[derive(Clone)]
pub struct DeliveryStatusService {
    queries: Arc<dyn DeliveryQueries>,
}

impl DeliveryStatusService {
    pub fn new(queries: Arc<dyn DeliveryQueries>) -> Self {
        Self { queries }
    }

    pub async fn get(
        &self,
        who: &kernel::Principal,
        id: InteractionId,
    ) -> Result<DeliveryStatus, DomainError> {
        who.require(kernel::Permission::MeterRead)?;
        if who.kind != kernel::AccountKind::Member {
            return Err(DomainError::NotFound("interaction"));
        }
        self.queries
            .delivery_status(who.scope(), id)
            .await?
            .ok_or(DomainError::NotFound("interaction"))
    }
}
