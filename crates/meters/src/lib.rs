//! The domain core of tiamat's meter command pipeline. Pure: rules, state machines and ports, no
//! I/O (DESIGN.md §1). Storage, HTTP and the network-server adapters live elsewhere.
//!
//! # The model
//!
//! An **interaction** ([`InteractionType`]) is one logical command to one meter: a read, a relay
//! switch, a clock write, or an STS token. It moves through [`InteractionStatus`] only by
//! [`InteractionStatus::apply`] with a [`Transition`]; the five terminal statuses (SUCCESSFUL,
//! FAILED, ABORTED, SUPERSEDED, EXPIRED) accept nothing, so a manual retry is a new interaction.
//!
//! ```text
//!             ┌─ Suspend ─► SUSPENDED ─┐            ┌─ DeliveryFailed{retryable} (backoff)
//!  created ─► QUEUED ◄──── Resume ─────┘            │
//!             │  ▲ └─ Defer ─► DEFERRED ─ Resume ─┘ ▼
//!             └──┴──────── Claim ───────────────► PROCESSING ── Acked ──► SUCCESSFUL
//!                                                   │  ├─ Rejected / DeliveryFailed ─► FAILED
//!                                                   │  └─ DeliveryUnconfirmed ─► VERIFYING
//!   pending ── Superseded ─► SUPERSEDED             │        ├─ VerificationMatched ─► SUCCESSFUL
//!   pending ── Expired ────► EXPIRED  (reads)       │        └─ Mismatched/Unavailable ─► FAILED
//!   unfinished ─ Cancelled ─► ABORTED
//! ```
//!
//! A **meter shadow** ([`MeterShadow`]) holds, per [`Attribute`], the *desired* value (who wanted
//! it, when, and which interaction carries it) and the *reported* value (when the meter was in
//! that state, and how we know). Only the relay and the power limit can be desired; the rest
//! (credit, voltage, current, power, firmware, clock, tamper) is only reported. **Drift** is a
//! desired value the meter does not report.
//!
//! # The rules
//!
//! * **Gatekeeper** ([`gatekeeper()`]): grid not energised or its gateways down → SUSPENDED; a
//!   LoRaWAN meter silent for 24 h → ABORTED; a commissioning step for a meter silent for an hour
//!   → DEFERRED until it is heard; a type the protocol or firmware cannot do → ABORTED.
//! * **Intake** ([`plan_intake`]), run against the meter's unfinished interactions before
//!   anything is created:
//!   - *coalescing*: a read joins a pending, unexpired read of the same type; a control intent
//!     joins an unfinished command with the same value;
//!   - *supersession*: a control intent retires the contradicting commands on its attribute that
//!     have not gone out (pending, parked between retries, or verifying); one that is on the wire
//!     cannot be recalled, so the new command waits (DEFERRED) for it;
//!   - *value-carrying tokens* (TOP_UP, CLEAR_CREDIT, CLEAR_TAMPER, DELIVER_PREEXISTING_TOKEN) and
//!     commissioning steps are never coalesced or superseded;
//!   - *read TTL*: reads expire 30 minutes (configurable) after intake; an expired read is never
//!     claimed ([`claim_or_expire`]).
//! * **Priority** ([`InteractionType::priority`]): the predecessor's numbers.
//! * **Retry** ([`RetryPolicy`]): 2 s · 2ⁿ plus up to 50 % jitter from an injected [`Jitter`],
//!   11 retries over about 68 minutes; non-retryable errors fail at once.
//! * **Read-after-fail** ([`on_delivery_failure`], [`verdict`]): a control command whose answer
//!   was lost goes to VERIFYING and a read decides, instead of a second write.
//! * **Reconciliation** ([`reconcile()`]): at most one corrective command per drifted attribute,
//!   none while a command for it is unfinished or in cooldown, capped attempts, and per-grid
//!   OFF / SHADOW (report only) / ON. After an outage, [`recover_suspended`] keeps at most one
//!   command per attribute: the latest intent.
//!
//! # Ports
//!
//! [`InteractionRepo`], [`ShadowRepo`], [`TokenGenerator`] and [`Clock`], with `mockall` mocks
//! behind the `mocks` feature.

pub mod batches;
pub mod commands;
pub mod commissioning;
pub mod delivery;
pub mod gatekeeper;
pub mod ids;
pub mod intake;
pub mod kind;
pub mod network;
pub mod ports;
pub mod reconcile;
pub mod reconciler;
pub mod retry;
pub mod shadow;
pub mod status;
pub mod token;
pub mod verify;

#[cfg(any(test, feature = "mocks"))]
pub use commands::MockCommandRecords;
pub use commands::{
    CommandRecords, CommandRequest, CommandService, IntakeOptions, InteractionFilter,
    InteractionQueries, InteractionView, IssuedToken, TokenIssue,
};
#[cfg(any(test, feature = "mocks"))]
pub use commissioning::MockInstallRepo;
pub use commissioning::{
    Advance, Commissioning, CommissioningStatus, CommissioningStep, DueCommissioning,
    InstallOperation, InstallOutcome, InstallRepo, InstallService, InstallSession,
    InstallSessionId, RegistrationStatus, RunReport, StepFacts, UninstallOutcome, advance,
};
#[cfg(any(test, feature = "mocks"))]
pub use delivery::MockDeliveryRepo;
pub use delivery::{
    AnswerTo, Completion, Delivery, DeliveryQueries, DeliveryRepo, DeliveryService, DeliveryStage,
    DeliveryStatus, DeliveryStatusService, DeliveryTimings, DeviceProtocol, DeviceReply,
    EarlyEventRetry, EventOutcome, EventReceipt, FailurePlan, PassReport, Phase, QueueItemEvent,
    QueueItemTrace, ReplyOutcome, Unapplied, first_phase, place_unapplied,
};
pub use gatekeeper::{
    Admission, AdmissionContext, GatePolicy, GatewayFacts, GridFacts, HoldReason, MeterFacts,
    Release, gatekeeper,
};
pub use ids::{BatchExecutionId, CommissioningId, InteractionId};
pub use intake::{
    IntakeAction, IntakePlan, IntakePolicy, IntakeRequest, PendingInteraction, claim_or_expire,
    intended_value, overdue_reads, plan_intake,
};
pub use kind::{Attribute, Category, InteractionType, Origin, PriorityContext};
pub use network::{
    DeviceRegistration, DeviceRegistry, Downlink, DownlinkQueue, NetworkError, Registered,
    dev_eui_for,
};
#[cfg(any(test, feature = "mocks"))]
pub use network::{MockDeviceRegistry, MockDownlinkQueue};
pub use ports::{
    Clock, HistoryEntry, IntakeCommit, IntakeReceipt, InteractionRepo, Requester, ShadowRepo,
    SystemClock, TokenGenerator,
};
#[cfg(any(test, feature = "mocks"))]
pub use ports::{MockClock, MockInteractionRepo, MockShadowRepo, MockTokenGenerator};
pub use reconcile::{
    Assessment, GridHold, Hold, PlannedCommand, ReconcilePolicy, ReconciliationMode, RecoveryPlan,
    assess, grid_gate, reconcile, recover_suspended,
};
pub use reconciler::{
    GridReconciliation, ReconcileRepo, ReconcileReport, Reconciler, ReconciliationSettings,
    SHADOW_FINDINGS_KEPT, ShadowFinding, ShadowReport, SingleFlight,
};
pub use retry::{FixedJitter, Jitter, RetryDecision, RetryPolicy};
pub use shadow::{
    AttributeState, AttributeValue, Desired, Drift, Intent, MeterClock, MeterShadow, ReconcileMeta,
    RelayState, Reported, ReportedVia, ShadowError,
};
pub use status::{IllegalTransition, InteractionStatus, StatusBucket, Transition};
pub use token::{StsToken, TokenKind, TokenRequest, next_sts_issue_time};
pub use verify::{
    DeliveryFailure, FailureOutcome, on_delivery_failure, settled_by_shadow, verdict,
};
