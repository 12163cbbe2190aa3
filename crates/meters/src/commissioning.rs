//! Installing, uninstalling and commissioning meters (§2.20, §2.21).
//!
//! Installing a meter that is assigned to a connection opens an **install session**, registers
//! the device with the network server (LoRaWAN) and starts a **commissioning**: the fixed
//! [`SEQUENCE`] of interactions that brings a new meter to a known state, sent one at a time.
//! The first step goes through the gatekeeper (which defers it while the meter has not been
//! heard for an hour); the others wait DEFERRED. The advancement runner applies [`advance`] to
//! the steps' statuses whenever they change: the next step is released when none is under way,
//! a step that ends without success aborts the rest and fails the commissioning, and when every
//! step succeeded the meter is commissioned (batches and the reconciler then act on it).

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use grids::meters::{Meter, MeterRepo, MeterService};
use grids::state::GridStateRepo;
use grids::vocab::CommunicationProtocol;
use kernel::{DomainError, MeterId, OrganizationId, Permission, Principal, TenantScope};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::commands::{CommandService, IntakeOptions};
use crate::gatekeeper::AdmissionContext;
use crate::ids::{CommissioningId, InteractionId};
use crate::intake::IntakeRequest;
use crate::kind::{InteractionType, Origin};
use crate::network::{DeviceRegistration, DeviceRegistry, NetworkError, dev_eui_for};
use crate::ports::{Clock, HistoryEntry, InteractionRepo, Requester};
use crate::status::{InteractionStatus, Transition};

/// The commissioning steps, in order. (The predecessor's optional initial TOP_UP is left out:
/// credit is sold through orders.)
pub const SEQUENCE: [InteractionType; 5] = [
    InteractionType::ClearTamper,
    InteractionType::ClearCredit,
    InteractionType::SetPowerLimit,
    InteractionType::ReadVoltage,
    InteractionType::ReadPower,
];

/// The history code of a step that waits for the previous one (and only for it: a step the
/// gatekeeper deferred waits for the meter instead).
pub const AWAITING_PREVIOUS_STEP: &str = "awaiting_previous_step";

/// One install session's id (`install_sessions`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(transparent)]
#[schema(value_type = i64)]
pub struct InstallSessionId(pub i64);

impl InstallSessionId {
    pub const fn get(self) -> i64 {
        self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InstallOperation {
    Install,
    Uninstall,
}

impl InstallOperation {
    pub fn as_str(self) -> &'static str {
        match self {
            InstallOperation::Install => "INSTALL",
            InstallOperation::Uninstall => "UNINSTALL",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [InstallOperation::Install, InstallOperation::Uninstall]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

/// Registering (install) or removing (uninstall) the device on the network server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RegistrationStatus {
    Pending,
    Successful,
    Failed,
}

impl RegistrationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RegistrationStatus::Pending => "PENDING",
            RegistrationStatus::Successful => "SUCCESSFUL",
            RegistrationStatus::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            RegistrationStatus::Pending,
            RegistrationStatus::Successful,
            RegistrationStatus::Failed,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CommissioningStatus {
    /// Started; no step has reached the meter yet.
    Pending,
    /// Some step is on the wire or done.
    Processing,
    Successful,
    Failed,
}

impl CommissioningStatus {
    pub const ALL: [CommissioningStatus; 4] = [
        CommissioningStatus::Pending,
        CommissioningStatus::Processing,
        CommissioningStatus::Successful,
        CommissioningStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CommissioningStatus::Pending => "PENDING",
            CommissioningStatus::Processing => "PROCESSING",
            CommissioningStatus::Successful => "SUCCESSFUL",
            CommissioningStatus::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    pub fn is_finished(self) -> bool {
        match self {
            CommissioningStatus::Pending | CommissioningStatus::Processing => false,
            CommissioningStatus::Successful | CommissioningStatus::Failed => true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct InstallSession {
    pub id: InstallSessionId,
    pub organization_id: OrganizationId,
    pub meter_id: MeterId,
    pub operation: InstallOperation,
    pub registration_status: RegistrationStatus,
    /// Why registration failed, or how it was done.
    pub registration_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One step of a commissioning: an interaction.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CommissioningStep {
    pub interaction_id: InteractionId,
    pub kind: InteractionType,
    pub status: InteractionStatus,
    /// The newest history entry (a hold, a failure, a release).
    pub last_event: Option<HistoryEntry>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Commissioning {
    #[schema(value_type = i64)]
    pub id: CommissioningId,
    pub organization_id: OrganizationId,
    pub meter_id: MeterId,
    pub install_session_id: InstallSessionId,
    pub status: CommissioningStatus,
    pub failure_reason: Option<String>,
    /// The commissioning this one retries.
    #[schema(value_type = Option<i64>)]
    pub retry_of: Option<CommissioningId>,
    /// In sequence order.
    pub steps: Vec<CommissioningStep>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// What an install answers.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct InstallOutcome {
    pub session: InstallSession,
    pub commissioning: Commissioning,
}

/// What an uninstall answers.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct UninstallOutcome {
    pub session: InstallSession,
    /// Unfinished interactions that were aborted.
    #[schema(value_type = Vec<i64>)]
    pub aborted_interactions: Vec<InteractionId>,
    pub meter: Meter,
}

/// A commissioning claimed by the advancement runner.
#[derive(Debug, Clone, PartialEq)]
pub struct DueCommissioning {
    pub id: CommissioningId,
    /// The newest step change (or the meter's last uplink) when it was claimed.
    pub steps_changed_at: Option<DateTime<Utc>>,
}

/// Storage of install sessions and commissionings. Every change is audited in its transaction.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait InstallRepo: Send + Sync {
    /// Opens a session (registration PENDING) and points the meter at it.
    async fn open_session(
        &self,
        meter: MeterId,
        operation: InstallOperation,
        by: Requester,
    ) -> Result<InstallSession, DomainError>;
    async fn record_registration(
        &self,
        session: InstallSessionId,
        status: RegistrationStatus,
        reason: Option<String>,
    ) -> Result<InstallSession, DomainError>;
    /// The meter's newest session.
    async fn latest_session(&self, meter: MeterId) -> Result<Option<InstallSession>, DomainError>;
    /// Opens a PENDING commissioning and clears the meter's commissioned mark. `Conflict` while
    /// the meter has an unfinished one.
    async fn open_commissioning(
        &self,
        meter: MeterId,
        session: InstallSessionId,
        retry_of: Option<CommissioningId>,
        by: Requester,
    ) -> Result<CommissioningId, DomainError>;
    /// Compare-and-set of the status; SUCCESSFUL marks the meter commissioned. Answers whether
    /// it moved.
    async fn set_status(
        &self,
        id: CommissioningId,
        from: CommissioningStatus,
        to: CommissioningStatus,
        reason: Option<String>,
    ) -> Result<bool, DomainError>;
    /// With its steps in sequence order.
    async fn commissioning(
        &self,
        scope: TenantScope,
        id: CommissioningId,
    ) -> Result<Option<Commissioning>, DomainError>;
    /// The meter's commissionings, newest first.
    async fn commissionings_of(
        &self,
        scope: TenantScope,
        meter: MeterId,
    ) -> Result<Vec<Commissioning>, DomainError>;
    async fn running(&self, meter: MeterId) -> Result<Option<CommissioningId>, DomainError>;
    /// Clears the meter's commissioned mark (uninstall).
    async fn decommission(&self, meter: MeterId) -> Result<(), DomainError>;
    /// Leases up to `limit` unfinished commissionings whose steps changed, or whose meter was
    /// heard, since they were last looked at (`FOR UPDATE SKIP LOCKED`: instances never take
    /// the same one).
    async fn claim_due(
        &self,
        limit: i64,
        lease: Duration,
    ) -> Result<Vec<DueCommissioning>, DomainError>;
    /// Records that changes up to `seen` were acted on, and ends the lease.
    async fn mark_seen(
        &self,
        id: CommissioningId,
        seen: Option<DateTime<Utc>>,
    ) -> Result<(), DomainError>;
}

/// What the rules need to know about a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepFacts {
    pub id: InteractionId,
    pub kind: InteractionType,
    pub status: InteractionStatus,
    /// DEFERRED only because the previous step has not finished (not held by the gatekeeper).
    pub awaiting_previous: bool,
    /// DEFERRED by the gatekeeper until the meter is heard, and it has been heard since.
    pub heard_since_hold: bool,
}

impl StepFacts {
    /// `meter_last_seen_at`: when the meter was last heard (uplink, join, answer).
    pub fn of(step: &CommissioningStep, meter_last_seen_at: Option<DateTime<Utc>>) -> Self {
        let deferred = step.status == InteractionStatus::Deferred;
        let awaiting_previous = deferred
            && step
                .last_event
                .as_ref()
                .and_then(|e| e.code.as_deref())
                .is_some_and(|c| c == AWAITING_PREVIOUS_STEP);
        // The gatekeeper defers commissioning steps only until the meter is heard.
        let held_since = step.last_event.as_ref().map_or(step.updated_at, |e| e.at);
        let heard_since_hold = deferred
            && !awaiting_previous
            && meter_last_seen_at.is_some_and(|seen| seen > held_since);
        Self {
            id: step.interaction_id,
            kind: step.kind,
            status: step.status,
            awaiting_previous,
            heard_since_hold,
        }
    }
}

/// What to do with a commissioning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advance {
    /// Nothing yet: a step is under way, or the next one waits for the meter.
    Wait {
        /// PROCESSING once a step has reached the meter.
        status: CommissioningStatus,
    },
    /// Release this DEFERRED step (DEFERRED → QUEUED): its turn came, or the meter it waited
    /// for was heard.
    Release {
        step: InteractionId,
        status: CommissioningStatus,
    },
    /// Every step succeeded.
    Succeed,
    /// Abort these pending steps and fail the commissioning.
    Fail {
        reason: String,
        abort: Vec<(InteractionId, InteractionStatus)>,
    },
}

/// How a step's status counts for the sequence.
enum StepState {
    Done,
    Ended,
    UnderWay,
    Waiting,
}

fn state_of(status: InteractionStatus) -> StepState {
    match status {
        InteractionStatus::Successful => StepState::Done,
        InteractionStatus::Failed
        | InteractionStatus::Aborted
        | InteractionStatus::Expired
        | InteractionStatus::Superseded => StepState::Ended,
        InteractionStatus::Queued
        | InteractionStatus::Processing
        | InteractionStatus::Verifying
        | InteractionStatus::Suspended => StepState::UnderWay,
        InteractionStatus::Deferred => StepState::Waiting,
    }
}

/// The advancement rules, over the steps' statuses. A finished commissioning never moves.
pub fn advance(current: CommissioningStatus, steps: &[StepFacts]) -> Advance {
    if current.is_finished() {
        return Advance::Wait { status: current };
    }
    let pending_steps = || {
        steps
            .iter()
            .filter(|s| s.status.is_pending())
            .map(|s| (s.id, s.status))
            .collect::<Vec<_>>()
    };
    // A commissioning whose steps were not all created (a crash while starting) cannot succeed.
    if let Some(missing) = SEQUENCE
        .iter()
        .find(|kind| !steps.iter().any(|s| s.kind == **kind))
    {
        return Advance::Fail {
            reason: format!("the {missing} step is missing"),
            abort: pending_steps(),
        };
    }
    if let Some(ended) = steps
        .iter()
        .find(|s| matches!(state_of(s.status), StepState::Ended))
    {
        return Advance::Fail {
            reason: format!(
                "the {} step ended {} (interaction {})",
                ended.kind,
                ended.status.as_str(),
                ended.id
            ),
            abort: pending_steps(),
        };
    }
    if steps
        .iter()
        .all(|s| matches!(state_of(s.status), StepState::Done))
    {
        return Advance::Succeed;
    }
    let reached_meter = steps
        .iter()
        .any(|s| s.status.is_in_flight() || s.status == InteractionStatus::Successful);
    let status = if reached_meter {
        CommissioningStatus::Processing
    } else {
        current
    };
    if steps
        .iter()
        .any(|s| matches!(state_of(s.status), StepState::UnderWay))
    {
        return Advance::Wait { status };
    }
    // Only DEFERRED and SUCCESSFUL steps remain: the first waiting one in sequence order is next.
    let next = SEQUENCE.iter().find_map(|kind| {
        steps
            .iter()
            .find(|s| s.kind == *kind && matches!(state_of(s.status), StepState::Waiting))
    });
    match next {
        Some(step) if step.awaiting_previous || step.heard_since_hold => Advance::Release {
            step: step.id,
            status,
        },
        // Held by the gatekeeper until the meter is heard.
        Some(_) | None => Advance::Wait { status },
    }
}

/// Installs, uninstalls and commissions meters.
#[derive(Clone)]
pub struct InstallService {
    repo: Arc<dyn InstallRepo>,
    commands: CommandService,
    meters: Arc<dyn MeterRepo>,
    meter_service: MeterService,
    grids: Arc<dyn GridStateRepo>,
    interactions: Arc<dyn InteractionRepo>,
    clock: Arc<dyn Clock>,
}

/// How long the runner holds a commissioning it claimed.
const LEASE_SECS: i64 = 30;
/// Commissionings advanced per runner pass.
const BATCH: i64 = 100;

fn requester(who: &Principal) -> Requester {
    Requester {
        account: who.account_id,
        api_key: who.api_key_id(),
    }
}

impl InstallService {
    pub fn new(
        repo: Arc<dyn InstallRepo>,
        commands: CommandService,
        meters: Arc<dyn MeterRepo>,
        grids: Arc<dyn GridStateRepo>,
        interactions: Arc<dyn InteractionRepo>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            repo,
            commands,
            meter_service: MeterService::new(meters.clone()),
            meters,
            grids,
            interactions,
            clock,
        }
    }

    async fn visible_meter(&self, who: &Principal, id: MeterId) -> Result<Meter, DomainError> {
        self.meters
            .get(who.scope(), id)
            .await?
            .ok_or(DomainError::NotFound("meter"))
    }

    /// Installs an assigned meter: registers a LoRaWAN device with the network server, then
    /// starts commissioning. While a commissioning runs, answers it (`false`: nothing new).
    /// Without a network server (or with one that is down) the session is kept FAILED with the
    /// reason and the call fails `Unavailable`; a refusal is a `Conflict`.
    pub async fn install(
        &self,
        who: &Principal,
        meter_id: MeterId,
        devices: Option<Arc<dyn DeviceRegistry>>,
    ) -> Result<(InstallOutcome, bool), DomainError> {
        who.require(Permission::InstallManage)?;
        let meter = self.visible_meter(who, meter_id).await?;
        if meter.connection_id.is_none() {
            return Err(DomainError::Conflict(
                "the meter is not assigned to a connection; assign it first".into(),
            ));
        }
        if let Some(running) = self.repo.running(meter.id).await? {
            let session =
                self.repo.latest_session(meter.id).await?.ok_or_else(|| {
                    DomainError::Internal("a commissioning without a session".into())
                })?;
            let commissioning = self.commissioning_by_id(running).await?;
            return Ok((
                InstallOutcome {
                    session,
                    commissioning,
                },
                false,
            ));
        }
        self.can_commission(&meter)?;
        let session = self
            .repo
            .open_session(meter.id, InstallOperation::Install, requester(who))
            .await?;
        let session = match meter.communication_protocol {
            CommunicationProtocol::CalinLorawan => {
                self.register(&meter, session, devices.as_deref()).await?
            }
            // Registered on CALIN's head end by the vendor's tooling, outside tiamat.
            CommunicationProtocol::CalinV1 | CommunicationProtocol::CalinV2 => {
                self.repo
                    .record_registration(
                        session.id,
                        RegistrationStatus::Successful,
                        Some("not needed: the vendor's head end knows CALIN V1/V2 meters".into()),
                    )
                    .await?
            }
        };
        let commissioning = self
            .start_commissioning(&meter, session.id, None, requester(who))
            .await?;
        Ok((
            InstallOutcome {
                session,
                commissioning,
            },
            true,
        ))
    }

    /// The first three steps are tokens: refused before anything changes when they cannot be
    /// generated.
    fn can_commission(&self, meter: &Meter) -> Result<(), DomainError> {
        if !self.commands.generates_tokens() {
            return Err(DomainError::Unavailable(
                "commissioning needs the STS token generator, which is not configured".into(),
            ));
        }
        if meter.communication_protocol == CommunicationProtocol::CalinLorawan
            && !meter.has_decoder_key
        {
            return Err(DomainError::invalid(
                "decoder_key",
                "commissioning sends STS tokens: set the meter's decoder key first",
            ));
        }
        Ok(())
    }

    async fn register(
        &self,
        meter: &Meter,
        session: InstallSession,
        devices: Option<&dyn DeviceRegistry>,
    ) -> Result<InstallSession, DomainError> {
        let failed = |reason: String| async move {
            self.repo
                .record_registration(session.id, RegistrationStatus::Failed, Some(reason))
                .await
        };
        let Some(devices) = devices else {
            let reason = "no LoRaWAN network server is configured".to_owned();
            failed(reason.clone()).await?;
            return Err(DomainError::Unavailable(reason));
        };
        let Some(dev_eui) =
            dev_eui_for(&meter.external_reference, meter.lorawan_dev_eui.as_deref())
        else {
            let reason = "the meter has no DevEUI and its serial is not one".to_owned();
            failed(reason.clone()).await?;
            return Err(DomainError::invalid("lorawan_dev_eui", &reason));
        };
        let registration = DeviceRegistration {
            dev_eui: dev_eui.clone(),
            name: meter.external_reference.clone(),
            description: format!(
                "meter {} (tiamat id {})",
                meter.external_reference, meter.id
            ),
        };
        match devices.register(registration).await {
            Ok(registered) => {
                let how = match registered {
                    crate::network::Registered::Created => "registered",
                    crate::network::Registered::AlreadyExisted => "already registered",
                };
                self.repo
                    .record_registration(
                        session.id,
                        RegistrationStatus::Successful,
                        Some(format!("{how} as {dev_eui}")),
                    )
                    .await
            }
            Err(e) => {
                let reason = e.to_string();
                failed(reason.clone()).await?;
                Err(match e {
                    NetworkError::Transient(_) => DomainError::Unavailable(reason),
                    NetworkError::Permanent { .. } => DomainError::Conflict(reason),
                })
            }
        }
    }

    /// Opens a commissioning and creates its steps in order: the first admitted by the
    /// gatekeeper (as a commissioning step), the rest DEFERRED until their turn. A step that
    /// cannot be created fails the commissioning and aborts the steps made so far.
    async fn start_commissioning(
        &self,
        meter: &Meter,
        session: crate::commissioning::InstallSessionId,
        retry_of: Option<CommissioningId>,
        by: Requester,
    ) -> Result<Commissioning, DomainError> {
        let grid = meter
            .grid_id
            .ok_or_else(|| DomainError::Conflict("the meter is not on a grid".into()))?;
        let fs_on = self
            .grids
            .state(TenantScope::All, grid)
            .await?
            .is_some_and(|s| s.should_fs_be_on);
        // Full service on: no limit (0 W); otherwise the meter's high-priority-service limit.
        let power_limit_w = if fs_on {
            0
        } else {
            meter.hps_mode_power_limit_w
        };
        let id = self
            .repo
            .open_commissioning(meter.id, session, retry_of, by)
            .await?;
        let mut created: Vec<(InteractionId, InteractionStatus)> = Vec::new();
        for (i, kind) in SEQUENCE.into_iter().enumerate() {
            let mut request = IntakeRequest::new(meter.id, kind, Origin::Commissioning);
            request.commissioning_id = Some(id);
            if kind == InteractionType::SetPowerLimit {
                request.power_limit_w = Some(power_limit_w);
            }
            let options = IntakeOptions {
                following_up_on: None,
                admission: AdmissionContext {
                    from_commissioning: true,
                    is_retry: retry_of.is_some(),
                    after_grid_transition: false,
                },
                hold: (i > 0).then(|| HistoryEntry {
                    at: self.clock.now(),
                    status: InteractionStatus::Deferred,
                    reason: "waits for the previous commissioning step".into(),
                    code: Some(AWAITING_PREVIOUS_STEP.into()),
                    is_final: false,
                }),
            };
            match self.commands.submit_with(request, options).await {
                Ok((view, _)) => created.push((view.id, view.status)),
                Err(e) => {
                    let reason = format!("the {kind} step could not be created: {e}");
                    self.abort_steps(&created, &reason).await;
                    self.repo
                        .set_status(
                            id,
                            CommissioningStatus::Pending,
                            CommissioningStatus::Failed,
                            Some(reason),
                        )
                        .await?;
                    return Err(e);
                }
            }
        }
        self.commissioning_by_id(id).await
    }

    /// Aborts pending steps; a step that moved meanwhile is left alone (logged by the caller's
    /// next pass through the rules).
    async fn abort_steps(
        &self,
        steps: &[(InteractionId, InteractionStatus)],
        reason: &str,
    ) -> usize {
        let mut aborted = 0;
        for (id, from) in steps {
            if !from.is_pending() {
                continue;
            }
            let entry = HistoryEntry {
                at: self.clock.now(),
                status: *from,
                reason: reason.to_owned(),
                code: Some("commissioning_aborted".into()),
                is_final: true,
            };
            if let Ok(Some(_)) = self
                .interactions
                .transition(*id, *from, Transition::Cancelled, Some(entry))
                .await
            {
                aborted += 1;
            }
        }
        aborted
    }

    async fn commissioning_by_id(&self, id: CommissioningId) -> Result<Commissioning, DomainError> {
        self.repo
            .commissioning(TenantScope::All, id)
            .await?
            .ok_or(DomainError::NotFound("commissioning"))
    }

    /// Uninstalls a meter: removes the device from the network server (the outcome is kept on
    /// the session; a failure does not stop the uninstall), aborts every unfinished interaction,
    /// fails a running commissioning, clears the commissioned mark and unassigns the meter.
    pub async fn uninstall(
        &self,
        who: &Principal,
        meter_id: MeterId,
        devices: Option<Arc<dyn DeviceRegistry>>,
    ) -> Result<UninstallOutcome, DomainError> {
        who.require(Permission::InstallManage)?;
        let meter = self.visible_meter(who, meter_id).await?;
        if meter.connection_id.is_none() {
            return Err(DomainError::Conflict("the meter is not installed".into()));
        }
        let session = self
            .repo
            .open_session(meter.id, InstallOperation::Uninstall, requester(who))
            .await?;
        let (status, reason) = match meter.communication_protocol {
            CommunicationProtocol::CalinLorawan => {
                match (
                    devices,
                    dev_eui_for(&meter.external_reference, meter.lorawan_dev_eui.as_deref()),
                ) {
                    (None, _) => (
                        RegistrationStatus::Failed,
                        "not removed: no LoRaWAN network server is configured".to_owned(),
                    ),
                    (Some(_), None) => (
                        RegistrationStatus::Failed,
                        "not removed: the meter has no DevEUI".to_owned(),
                    ),
                    (Some(devices), Some(dev_eui)) => match devices.remove(&dev_eui).await {
                        Ok(()) => (RegistrationStatus::Successful, format!("removed {dev_eui}")),
                        Err(e) => (RegistrationStatus::Failed, format!("not removed: {e}")),
                    },
                }
            }
            CommunicationProtocol::CalinV1 | CommunicationProtocol::CalinV2 => (
                RegistrationStatus::Successful,
                "not needed: the vendor's head end knows CALIN V1/V2 meters".to_owned(),
            ),
        };
        let session = self
            .repo
            .record_registration(session.id, status, Some(reason))
            .await?;
        if let Some(running) = self.repo.running(meter.id).await? {
            let current = self.commissioning_by_id(running).await?;
            self.repo
                .set_status(
                    running,
                    current.status,
                    CommissioningStatus::Failed,
                    Some("the meter was uninstalled".into()),
                )
                .await?;
        }
        let mut aborted = Vec::new();
        for pending in self.interactions.unfinished(meter.id).await? {
            if pending.status.apply(Transition::Cancelled).is_err() {
                continue;
            }
            let entry = HistoryEntry {
                at: self.clock.now(),
                status: pending.status,
                reason: format!("the meter was uninstalled by a {}", who.role),
                code: Some("uninstalled".into()),
                is_final: true,
            };
            if self
                .interactions
                .transition(
                    pending.id,
                    pending.status,
                    Transition::Cancelled,
                    Some(entry),
                )
                .await?
                .is_some()
            {
                aborted.push(pending.id);
            }
        }
        self.repo.decommission(meter.id).await?;
        let meter = self.meter_service.unassign(who, meter.id).await?;
        Ok(UninstallOutcome {
            session,
            aborted_interactions: aborted,
            meter,
        })
    }

    pub async fn commissionings_of(
        &self,
        who: &Principal,
        meter: MeterId,
    ) -> Result<Vec<Commissioning>, DomainError> {
        who.require(Permission::MeterRead)?;
        if who.kind != kernel::AccountKind::Member {
            return Err(DomainError::Forbidden(
                "commissionings are for staff".into(),
            ));
        }
        let meter = self.visible_meter(who, meter).await?;
        self.repo.commissionings_of(who.scope(), meter.id).await
    }

    pub async fn commissioning(
        &self,
        who: &Principal,
        id: CommissioningId,
    ) -> Result<Commissioning, DomainError> {
        who.require(Permission::MeterRead)?;
        if who.kind != kernel::AccountKind::Member {
            return Err(DomainError::NotFound("commissioning"));
        }
        self.repo
            .commissioning(who.scope(), id)
            .await?
            .ok_or(DomainError::NotFound("commissioning"))
    }

    /// Starts a fresh commissioning in place of a FAILED one, or of a PENDING one that stalled
    /// (its pending steps are aborted and it is failed first). PROCESSING and SUCCESSFUL: 409.
    pub async fn retry(
        &self,
        who: &Principal,
        id: CommissioningId,
    ) -> Result<Commissioning, DomainError> {
        who.require(Permission::InstallManage)?;
        let old = self.commissioning(who, id).await?;
        // Checked before the old one is touched.
        let meter = self.visible_meter(who, old.meter_id).await?;
        if meter.connection_id.is_none() {
            return Err(DomainError::Conflict("the meter is not installed".into()));
        }
        self.can_commission(&meter)?;
        match old.status {
            CommissioningStatus::Failed => {}
            CommissioningStatus::Pending => {
                let steps: Vec<_> = old
                    .steps
                    .iter()
                    .map(|s| (s.interaction_id, s.status))
                    .collect();
                self.abort_steps(&steps, "the commissioning is retried")
                    .await;
                if !self
                    .repo
                    .set_status(
                        id,
                        CommissioningStatus::Pending,
                        CommissioningStatus::Failed,
                        Some(format!("stalled; retried by a {}", who.role)),
                    )
                    .await?
                {
                    return Err(DomainError::Conflict(
                        "the commissioning changed meanwhile; reload it".into(),
                    ));
                }
            }
            CommissioningStatus::Processing | CommissioningStatus::Successful => {
                return Err(DomainError::Conflict(format!(
                    "only a FAILED or stalled PENDING commissioning can be retried; this one is {}",
                    old.status.as_str()
                )));
            }
        }
        self.start_commissioning(&meter, old.install_session_id, Some(id), requester(who))
            .await
    }

    /// One pass of the advancement runner: applies [`advance`] to every commissioning whose
    /// steps changed. Idempotent; instances share the work through leases. Answers how many
    /// commissionings were looked at; one that fails is logged by the caller's error count and
    /// retried when its lease ends.
    pub async fn run_once(&self) -> Result<RunReport, DomainError> {
        let due = self
            .repo
            .claim_due(BATCH, Duration::seconds(LEASE_SECS))
            .await?;
        let mut report = RunReport::default();
        for d in due {
            match self.advance_one(d.id).await {
                Ok(()) => {
                    self.repo.mark_seen(d.id, d.steps_changed_at).await?;
                    report.advanced += 1;
                }
                Err(e) => report.errors.push((d.id, e)),
            }
        }
        Ok(report)
    }

    async fn advance_one(&self, id: CommissioningId) -> Result<(), DomainError> {
        let c = self.commissioning_by_id(id).await?;
        let heard = self
            .meters
            .get(TenantScope::All, c.meter_id)
            .await?
            .and_then(|m| m.observed.last_seen_at);
        let facts: Vec<StepFacts> = c.steps.iter().map(|s| StepFacts::of(s, heard)).collect();
        match advance(c.status, &facts) {
            Advance::Wait { status } => {
                if status != c.status {
                    self.repo.set_status(id, c.status, status, None).await?;
                }
            }
            Advance::Release { step, status } => {
                if status != c.status {
                    self.repo.set_status(id, c.status, status, None).await?;
                }
                let entry = HistoryEntry {
                    at: self.clock.now(),
                    status: InteractionStatus::Deferred,
                    reason: "released: its turn came, or the meter it waited for was heard".into(),
                    code: Some("commissioning_step_released".into()),
                    is_final: false,
                };
                self.interactions
                    .transition(
                        step,
                        InteractionStatus::Deferred,
                        Transition::Resume,
                        Some(entry),
                    )
                    .await?;
            }
            Advance::Succeed => {
                self.repo
                    .set_status(id, c.status, CommissioningStatus::Successful, None)
                    .await?;
            }
            Advance::Fail { reason, abort } => {
                self.abort_steps(&abort, &format!("commissioning failed: {reason}"))
                    .await;
                self.repo
                    .set_status(id, c.status, CommissioningStatus::Failed, Some(reason))
                    .await?;
            }
        }
        Ok(())
    }
}

/// What one runner pass did.
#[derive(Debug, Default)]
pub struct RunReport {
    pub advanced: usize,
    pub errors: Vec<(CommissioningId, DomainError)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use InteractionStatus as S;
    use InteractionType as T;

    fn steps(statuses: [S; 5]) -> Vec<StepFacts> {
        SEQUENCE
            .into_iter()
            .zip(statuses)
            .enumerate()
            .map(|(i, (kind, status))| StepFacts {
                id: InteractionId(i as i64 + 1),
                kind,
                status,
                awaiting_previous: status == S::Deferred,
                heard_since_hold: false,
            })
            .collect()
    }

    const P: CommissioningStatus = CommissioningStatus::Pending;

    #[test]
    fn a_fresh_commissioning_waits_for_its_first_step() {
        let s = steps([
            S::Queued,
            S::Deferred,
            S::Deferred,
            S::Deferred,
            S::Deferred,
        ]);
        assert_eq!(advance(P, &s), Advance::Wait { status: P });
    }

    #[test]
    fn steps_are_released_one_at_a_time_in_order() {
        let s = steps([
            S::Successful,
            S::Deferred,
            S::Deferred,
            S::Deferred,
            S::Deferred,
        ]);
        assert_eq!(
            advance(P, &s),
            Advance::Release {
                step: InteractionId(2),
                status: CommissioningStatus::Processing
            }
        );
        // Order follows the sequence, not the order the steps are listed in.
        let mut reversed = steps([
            S::Successful,
            S::Successful,
            S::Deferred,
            S::Deferred,
            S::Deferred,
        ]);
        reversed.reverse();
        assert_eq!(
            advance(CommissioningStatus::Processing, &reversed),
            Advance::Release {
                step: InteractionId(3),
                status: CommissioningStatus::Processing
            }
        );
    }

    #[test]
    fn every_active_status_waits() {
        for active in [S::Queued, S::Processing, S::Verifying, S::Suspended] {
            let s = steps([S::Successful, active, S::Deferred, S::Deferred, S::Deferred]);
            assert_eq!(
                advance(P, &s),
                Advance::Wait {
                    status: CommissioningStatus::Processing
                },
                "{active:?}"
            );
        }
        let s = steps([
            S::Processing,
            S::Deferred,
            S::Deferred,
            S::Deferred,
            S::Deferred,
        ]);
        assert_eq!(
            advance(P, &s),
            Advance::Wait {
                status: CommissioningStatus::Processing
            },
            "on the wire counts as started"
        );
    }

    #[test]
    fn every_unsuccessful_end_fails_and_aborts_the_pending_rest() {
        for ended in [S::Failed, S::Aborted, S::Expired, S::Superseded] {
            let s = steps([S::Successful, ended, S::Deferred, S::Deferred, S::Deferred]);
            match advance(P, &s) {
                Advance::Fail { reason, abort } => {
                    assert!(reason.contains("CLEAR_CREDIT"), "{reason}");
                    assert_eq!(
                        abort,
                        vec![
                            (InteractionId(3), S::Deferred),
                            (InteractionId(4), S::Deferred),
                            (InteractionId(5), S::Deferred)
                        ]
                    );
                }
                other => panic!("{ended:?}: {other:?}"),
            }
        }
        // A step on the wire is not recalled; pending ones are.
        let s = steps([
            S::Failed,
            S::Processing,
            S::Queued,
            S::Suspended,
            S::Deferred,
        ]);
        let Advance::Fail { abort, .. } = advance(P, &s) else {
            panic!()
        };
        assert_eq!(
            abort.iter().map(|a| a.0.get()).collect::<Vec<_>>(),
            [3, 4, 5]
        );
    }

    #[test]
    fn all_successful_succeeds_and_finished_never_moves() {
        let s = steps([S::Successful; 5]);
        assert_eq!(advance(P, &s), Advance::Succeed);
        assert_eq!(
            advance(CommissioningStatus::Processing, &s),
            Advance::Succeed
        );
        for done in [CommissioningStatus::Successful, CommissioningStatus::Failed] {
            let s = steps([
                S::Failed,
                S::Deferred,
                S::Deferred,
                S::Deferred,
                S::Deferred,
            ]);
            assert_eq!(advance(done, &s), Advance::Wait { status: done });
        }
    }

    #[test]
    fn a_gatekeeper_hold_is_released_when_the_meter_is_heard_not_by_the_sequence() {
        let mut s = steps([S::Deferred; 5]);
        s[0].awaiting_previous = false;
        assert_eq!(advance(P, &s), Advance::Wait { status: P });
        s[0].heard_since_hold = true;
        assert_eq!(
            advance(P, &s),
            Advance::Release {
                step: InteractionId(1),
                status: P
            }
        );
        s[0].heard_since_hold = false;
        s[0].awaiting_previous = true;
        assert_eq!(
            advance(P, &s),
            Advance::Release {
                step: InteractionId(1),
                status: P
            }
        );
    }

    #[test]
    fn step_facts_tell_a_turn_from_a_gatekeeper_hold() {
        use chrono::TimeZone;
        let at = Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap();
        let step = |code: &str| CommissioningStep {
            interaction_id: InteractionId(1),
            kind: T::ClearTamper,
            status: S::Deferred,
            last_event: Some(HistoryEntry {
                at,
                status: S::Deferred,
                reason: "held".into(),
                code: Some(code.into()),
                is_final: false,
            }),
            updated_at: at,
        };
        let turn = StepFacts::of(&step(AWAITING_PREVIOUS_STEP), None);
        assert!(turn.awaiting_previous && !turn.heard_since_hold);
        let silent = step("meter_silent");
        let before = StepFacts::of(&silent, Some(at - Duration::minutes(1)));
        assert!(!before.awaiting_previous && !before.heard_since_hold);
        let after = StepFacts::of(&silent, Some(at + Duration::seconds(1)));
        assert!(after.heard_since_hold);
        let queued = CommissioningStep {
            status: S::Queued,
            ..silent
        };
        let q = StepFacts::of(&queued, Some(at + Duration::hours(1)));
        assert!(!q.awaiting_previous && !q.heard_since_hold);
    }

    #[test]
    fn a_missing_step_fails() {
        let mut s = steps([S::Successful; 5]);
        s.retain(|x| x.kind != T::ReadPower);
        assert!(
            matches!(advance(P, &s), Advance::Fail { reason, .. } if reason.contains("READ_POWER"))
        );
    }

    #[test]
    fn statuses_round_trip() {
        for c in CommissioningStatus::ALL {
            assert_eq!(CommissioningStatus::parse(c.as_str()), Some(c));
            assert_eq!(
                serde_json::to_value(c).unwrap(),
                serde_json::json!(c.as_str())
            );
        }
        for o in [InstallOperation::Install, InstallOperation::Uninstall] {
            assert_eq!(InstallOperation::parse(o.as_str()), Some(o));
        }
        for r in [
            RegistrationStatus::Pending,
            RegistrationStatus::Successful,
            RegistrationStatus::Failed,
        ] {
            assert_eq!(RegistrationStatus::parse(r.as_str()), Some(r));
        }
    }
}
