//! Directive batches (§1.5, §2.19, §6.4): scheduled rules that switch a grid's full service (FS)
//! or scan its meters, and their executions.
//!
//! A **rule** fires at a local time (`HH:MM` in the grid's IANA timezone), every day or once. A
//! firing is an **execution**: one intake per qualifying meter, run through the same coalescing,
//! supersession and gatekeeper rules as a single command ([`plan_meter`]), and linked to the
//! execution through a junction (created, or `coalesced` into an interaction that was already
//! waiting). Progress is counted through that junction by status bucket.
//!
//! A fire is identified by `(rule, local date, HH:MM)` ([`FireKey`]); the store keeps it unique,
//! so a rule fires once per day however many instances run the scheduler.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use grids::vocab::MeterType;
use kernel::{
    DomainError, GridId, MeterId, OrganizationId, Page, PageRequest, Permission, Principal,
    TenantScope, Validator,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::commands::TokenIssue;
use crate::gatekeeper::{Admission, AdmissionContext, GridFacts, MeterFacts, gatekeeper};
use crate::ids::BatchExecutionId;
use crate::intake::{IntakeAction, IntakePolicy, IntakeRequest, PendingInteraction};
use crate::kind::{Category, InteractionType, Origin};
use crate::ports::{Clock, HistoryEntry, IntakeCommit, Requester, TokenGenerator};
use crate::shadow::MeterShadow;
use crate::status::{InteractionStatus, StatusBucket};
use crate::token::{StsToken, TokenKind, TokenRequest};

/// A scheduled rule (`directive_batches`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(transparent)]
#[schema(value_type = i64)]
pub struct DirectiveBatchId(pub i64);

impl DirectiveBatchId {
    pub const fn get(self) -> i64 {
        self.0
    }
}

impl std::fmt::Display for DirectiveBatchId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// What a rule does, as clients name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ActionKind {
    /// Full service on: FS meters' relays on (dual-meter grids), or no power limit.
    FsOn,
    /// Full service off: FS meters' relays off, or the meters' HPS power limit.
    FsOff,
    /// A read of every meter (`scan_kind`).
    Scan,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::FsOn => "FS_ON",
            ActionKind::FsOff => "FS_OFF",
            ActionKind::Scan => "SCAN",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [ActionKind::FsOn, ActionKind::FsOff, ActionKind::Scan]
            .into_iter()
            .find(|a| a.as_str() == s)
    }
}

/// A validated action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BatchAction {
    /// Full service on (`true`) or off.
    Fs { on: bool },
    /// A read type.
    Scan(InteractionType),
}

impl BatchAction {
    /// Every problem with an (action, scan kind) pair.
    pub fn from_parts(
        action: ActionKind,
        scan_kind: Option<InteractionType>,
        v: &mut Validator,
    ) -> Option<Self> {
        match (action, scan_kind) {
            (ActionKind::FsOn, None) => Some(BatchAction::Fs { on: true }),
            (ActionKind::FsOff, None) => Some(BatchAction::Fs { on: false }),
            (ActionKind::FsOn | ActionKind::FsOff, Some(_)) => {
                v.check(false, "scan_kind", "only a SCAN takes a scan kind");
                None
            }
            (ActionKind::Scan, None) => {
                v.check(
                    false,
                    "scan_kind",
                    "a SCAN needs a read type such as READ_CREDIT",
                );
                None
            }
            (ActionKind::Scan, Some(kind)) if kind.category() == Category::Read => {
                Some(BatchAction::Scan(kind))
            }
            (ActionKind::Scan, Some(_)) => {
                v.check(
                    false,
                    "scan_kind",
                    "must be a read type (READ_CREDIT, READ_VOLTAGE, READ_POWER, READ_CURRENT, READ_POWER_LIMIT, ...)",
                );
                None
            }
        }
    }

    pub fn kind(self) -> ActionKind {
        match self {
            BatchAction::Fs { on: true } => ActionKind::FsOn,
            BatchAction::Fs { on: false } => ActionKind::FsOff,
            BatchAction::Scan(_) => ActionKind::Scan,
        }
    }

    pub fn scan_kind(self) -> Option<InteractionType> {
        match self {
            BatchAction::Scan(k) => Some(k),
            BatchAction::Fs { .. } => None,
        }
    }

    /// The FS switch, for FS rules.
    pub fn fs(self) -> Option<bool> {
        match self {
            BatchAction::Fs { on } => Some(on),
            BatchAction::Scan(_) => None,
        }
    }
}

/// Parses a strict `HH:MM` (24-hour) local time.
pub fn parse_local_time(s: &str) -> Option<NaiveTime> {
    let b = s.as_bytes();
    if b.len() != 5
        || b[2] != b':'
        || !b
            .iter()
            .enumerate()
            .all(|(i, c)| i == 2 || c.is_ascii_digit())
    {
        return None;
    }
    let hour: u32 = s[..2].parse().ok()?;
    let minute: u32 = s[3..].parse().ok()?;
    NaiveTime::from_hms_opt(hour, minute, 0)
}

/// `HH:MM`.
pub fn format_local_time(t: NaiveTime) -> String {
    format!("{:02}:{:02}", t.hour(), t.minute())
}

/// What a client sends to create a rule.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleDraft {
    pub grid_id: GridId,
    /// `HH:MM` in the grid's timezone.
    pub local_time: String,
    pub is_repeating: bool,
    pub action: ActionKind,
    pub scan_kind: Option<InteractionType>,
}

/// A rule that passed validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidRule {
    pub grid_id: GridId,
    pub local_time: NaiveTime,
    pub is_repeating: bool,
    pub action: BatchAction,
}

impl RuleDraft {
    pub fn validate(&self) -> Result<ValidRule, DomainError> {
        let mut v = Validator::new();
        let time = parse_local_time(&self.local_time);
        v.check(
            time.is_some(),
            "local_time",
            "must be a 24-hour time HH:MM, such as 18:00",
        );
        let action = BatchAction::from_parts(self.action, self.scan_kind, &mut v);
        v.finish()?;
        match (time, action) {
            (Some(local_time), Some(action)) => Ok(ValidRule {
                grid_id: self.grid_id,
                local_time,
                is_repeating: self.is_repeating,
                action,
            }),
            _ => Err(DomainError::Internal(
                "validation passed without values".into(),
            )),
        }
    }
}

/// A change to a rule; absent fields stay. `scan_kind: Some(None)` clears it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RulePatch {
    pub local_time: Option<String>,
    pub is_repeating: Option<bool>,
    pub action: Option<ActionKind>,
    pub scan_kind: Option<Option<InteractionType>>,
}

/// A stored rule.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DirectiveRule {
    pub id: DirectiveBatchId,
    pub organization_id: OrganizationId,
    pub grid_id: GridId,
    /// `HH:MM` in the grid's timezone.
    pub local_time: String,
    /// The grid's IANA timezone the time is read in.
    pub timezone: String,
    pub is_repeating: bool,
    pub action: ActionKind,
    pub scan_kind: Option<InteractionType>,
    /// One-shot rules: when it fired (it fires no more).
    pub done_at: Option<DateTime<Utc>>,
    pub last_fired_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl DirectiveRule {
    pub fn valid(&self) -> Result<ValidRule, DomainError> {
        self.draft_with(&RulePatch::default()).validate()
    }

    fn draft_with(&self, p: &RulePatch) -> RuleDraft {
        RuleDraft {
            grid_id: self.grid_id,
            local_time: p
                .local_time
                .clone()
                .unwrap_or_else(|| self.local_time.clone()),
            is_repeating: p.is_repeating.unwrap_or(self.is_repeating),
            action: p.action.unwrap_or(self.action),
            scan_kind: match (p.scan_kind, p.action) {
                (Some(k), _) => k,
                // Switching to an FS action drops a scan kind nobody mentioned.
                (None, Some(ActionKind::FsOn | ActionKind::FsOff)) => None,
                (None, _) => self.scan_kind,
            },
        }
    }

    /// The rule after `patch`, validated as a whole.
    pub fn patched(&self, patch: &RulePatch) -> Result<ValidRule, DomainError> {
        self.draft_with(patch).validate()
    }
}

/// One firing of a rule: its local date and time. `2026-11-27T18:00`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FireKey {
    pub local_date: NaiveDate,
    pub local_time: NaiveTime,
}

impl std::fmt::Display for FireKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}T{}",
            self.local_date.format("%Y-%m-%d"),
            format_local_time(self.local_time)
        )
    }
}

/// How long after its time a missed fire (instance down, slow tick) still happens.
pub const CATCH_UP: Duration = Duration::minutes(10);

/// The instant `time` happens on local `date` in `tz`. Twice (clocks go back): the first.
/// Never (clocks go forward over it): the first local minute after the gap.
pub fn fire_instant(tz: Tz, date: NaiveDate, time: NaiveTime) -> Option<DateTime<Utc>> {
    let start = date.and_time(time);
    // Gaps are at most a few hours; look minute by minute past one.
    (0..=180).find_map(|m| {
        tz.from_local_datetime(&(start + Duration::minutes(m)))
            .earliest()
            .map(|t| t.with_timezone(&Utc))
    })
}

/// The fire of `rule` due at `now`, if any: its local time has come (today or yesterday in the
/// grid's timezone), at most [`CATCH_UP`] ago, and not before the rule was last changed (a rule
/// written at 18:05 for 18:00 waits for tomorrow). One-shot rules that fired are never due.
pub fn due_fire(
    rule: &ValidRule,
    tz: Tz,
    changed_at: DateTime<Utc>,
    done: bool,
    now: DateTime<Utc>,
) -> Option<FireKey> {
    if done {
        return None;
    }
    let today = now.with_timezone(&tz).date_naive();
    // Today's fire first; yesterday's catches a late fire across local midnight.
    [Some(today), today.pred_opt()]
        .into_iter()
        .flatten()
        .find_map(|date| {
            let at = fire_instant(tz, date, rule.local_time)?;
            (at <= now && now < at + CATCH_UP && at >= changed_at).then_some(FireKey {
                local_date: date,
                local_time: rule.local_time,
            })
        })
}

pub fn parse_timezone(s: &str) -> Result<Tz, DomainError> {
    s.parse::<Tz>()
        .map_err(|_| DomainError::Internal(format!("grid timezone {s:?} is not an IANA timezone")))
}

/// What an execution needs to know about its grid.
#[derive(Debug, Clone, PartialEq)]
pub struct GridSetup {
    pub grid_id: GridId,
    pub organization_id: OrganizationId,
    pub timezone: String,
    /// Dual-meter grids have an HPS and an FS meter per connection.
    pub uses_dual_meter_setup: bool,
}

/// Whether a meter of `meter_type` takes part in `action` on a grid set up like `setup`: scans
/// read every meter; FS switches touch the FS meters of dual-meter grids, every meter otherwise.
pub fn qualifies(action: BatchAction, uses_dual_meter_setup: bool, meter_type: MeterType) -> bool {
    match action {
        BatchAction::Scan(_) => true,
        BatchAction::Fs { .. } => !uses_dual_meter_setup || meter_type == MeterType::Fs,
    }
}

/// The power limit that means "no limit" (full service on a single-meter grid).
pub const NO_POWER_LIMIT_W: i32 = 0;

/// The command an action sends to one meter: relay on/off on dual-meter grids; on single-meter
/// grids a power limit, none for FS on and the meter's HPS limit for FS off.
pub fn command_for(
    action: BatchAction,
    uses_dual_meter_setup: bool,
    hps_mode_power_limit_w: i32,
) -> (InteractionType, Option<i32>) {
    match action {
        BatchAction::Scan(kind) => (kind, None),
        BatchAction::Fs { on: true } if uses_dual_meter_setup => (InteractionType::TurnOn, None),
        BatchAction::Fs { on: false } if uses_dual_meter_setup => (InteractionType::TurnOff, None),
        BatchAction::Fs { on: true } => (InteractionType::SetPowerLimit, Some(NO_POWER_LIMIT_W)),
        BatchAction::Fs { on: false } => {
            (InteractionType::SetPowerLimit, Some(hps_mode_power_limit_w))
        }
    }
}

/// What planning needs of one meter, loaded in bulk.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchMeter {
    pub meter_id: MeterId,
    pub meter_type: MeterType,
    pub hps_mode_power_limit_w: i32,
    pub facts: MeterFacts,
    /// Its unfinished interactions, oldest first.
    pub unfinished: Vec<PendingInteraction>,
    pub shadow: Option<MeterShadow>,
}

/// One execution over a grid, as planning sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchOrder {
    pub execution: BatchExecutionId,
    pub action: BatchAction,
    pub uses_dual_meter_setup: bool,
}

/// Plans one meter's intake for an execution: the same rules as a single command (coalescing,
/// supersession, waiting for a command on the wire, the gatekeeper, the shadow intent) applied
/// to what was loaded. `token`: the STS token, for commands that carry one.
pub fn plan_meter(
    policy: &IntakePolicy,
    order: BatchOrder,
    meter: &BatchMeter,
    grid: Option<&GridFacts>,
    token: Option<StsToken>,
    requested_by: Requester,
    now: DateTime<Utc>,
) -> Result<IntakeCommit, DomainError> {
    let (kind, power_limit_w) = command_for(
        order.action,
        order.uses_dual_meter_setup,
        meter.hps_mode_power_limit_w,
    );
    let mut request = IntakeRequest::new(meter.meter_id, kind, Origin::Batch);
    request.power_limit_w = power_limit_w;
    request.batch_execution_id = Some(order.execution);
    let plan = policy.plan(&meter.unfinished, &request, now)?;
    let (status, history) = match &plan.action {
        IntakeAction::Coalesce { .. } => (InteractionStatus::Queued, None),
        IntakeAction::Create {
            wait_for: Some(on_wire),
            ..
        } => (
            InteractionStatus::Deferred,
            Some(HistoryEntry {
                at: now,
                status: InteractionStatus::Deferred,
                reason: format!(
                    "waits for interaction {} on the same attribute, already sent",
                    on_wire.get()
                ),
                code: Some("waiting_for_command_on_the_wire".into()),
                is_final: false,
            }),
        ),
        IntakeAction::Create { wait_for: None, .. } => {
            let admission = gatekeeper(&meter.facts, grid, kind, AdmissionContext::default(), now);
            let status = InteractionStatus::initial(&admission);
            let history = match &admission {
                Admission::Queue => None,
                Admission::Suspend(r) => Some(HistoryEntry::hold(now, status, r, false)),
                Admission::Abort(r) => Some(HistoryEntry::hold(now, status, r, true)),
                Admission::Defer { reason, .. } => {
                    Some(HistoryEntry::hold(now, status, reason, false))
                }
            };
            (status, history)
        }
    };
    let loaded_version = meter.shadow.as_ref().map_or(0, |s| s.version);
    let shadow = match request.intent(now, None) {
        Some(intent) if status != InteractionStatus::Aborted => {
            let mut shadow = meter
                .shadow
                .clone()
                .unwrap_or_else(|| MeterShadow::new(meter.meter_id));
            shadow.apply_intent(intent)?;
            Some(shadow)
        }
        _ => None,
    };
    Ok(IntakeCommit {
        priority: kind.priority(Origin::Batch.priority_context(None)),
        request,
        plan,
        status,
        history,
        token,
        shadow,
        shadow_loaded_version: loaded_version,
        requested_by,
    })
}

/// Statuses an interaction can be superseded from (given it is not on the wire).
pub fn supersedable_statuses() -> Vec<InteractionStatus> {
    InteractionStatus::ALL
        .into_iter()
        .filter(|s| s.apply(crate::status::Transition::Superseded).is_ok())
        .collect()
}

/// Statuses a read can expire from (given it is not on the wire).
pub fn expirable_statuses() -> Vec<InteractionStatus> {
    InteractionStatus::ALL
        .into_iter()
        .filter(|s| s.apply(crate::status::Transition::Expired).is_ok())
        .collect()
}

/// An execution's interactions by status bucket, counted through the junction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, ToSchema)]
pub struct ExecutionProgress {
    /// Interactions linked (created or coalesced into).
    pub total: i64,
    /// QUEUED, SUSPENDED, DEFERRED.
    pub pending: i64,
    /// PROCESSING, VERIFYING.
    pub in_flight: i64,
    pub successful: i64,
    /// FAILED, ABORTED.
    pub failed: i64,
    pub superseded: i64,
    pub expired: i64,
    /// Linked to an interaction that was already waiting, instead of creating one.
    pub coalesced: i64,
}

impl ExecutionProgress {
    /// Adds `n` interactions in `status`.
    pub fn add(&mut self, status: InteractionStatus, n: i64) {
        self.total += n;
        match status.bucket() {
            StatusBucket::Pending => self.pending += n,
            StatusBucket::InFlight => self.in_flight += n,
            StatusBucket::Succeeded => self.successful += n,
            StatusBucket::Failed => self.failed += n,
            StatusBucket::Retired => match status {
                InteractionStatus::Expired => self.expired += n,
                _ => self.superseded += n,
            },
        }
    }

    /// Nothing is waiting or on its way.
    pub fn is_complete(&self) -> bool {
        self.pending == 0 && self.in_flight == 0
    }

    /// At least half of the meters switched (FS executions).
    pub fn is_qualified(&self) -> bool {
        self.total > 0 && self.successful * 2 >= self.total
    }
}

/// A stored execution with its progress.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct BatchExecution {
    #[schema(value_type = i64)]
    pub id: BatchExecutionId,
    pub organization_id: OrganizationId,
    pub grid_id: GridId,
    pub directive_batch_id: DirectiveBatchId,
    pub action: ActionKind,
    pub scan_kind: Option<InteractionType>,
    /// `2026-11-27T18:00` (local date and time) for scheduled fires; `null` when run by hand.
    pub fire_key: Option<String>,
    /// Meters that qualified when it ran.
    pub meter_count: i64,
    pub created_count: i64,
    pub coalesced_count: i64,
    /// Meters left out: their STS token (SET_POWER_LIMIT) could not be generated.
    pub skipped_count: i64,
    pub progress: ExecutionProgress,
    /// Nothing pending or in flight any more.
    pub completed_at: Option<DateTime<Utc>>,
    /// FS executions: when half of the meters had switched, and the grid's FS flag was set.
    pub qualified_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// What to record when progress is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Settlement {
    pub completed: bool,
    /// Set the grid's FS flag to this.
    pub qualified_fs: Option<bool>,
}

/// What an execution's progress newly reached: completion, and for FS executions qualification
/// (which sets the grid's FS flag once).
pub fn settle(e: &BatchExecution) -> Settlement {
    let fs = match e.action {
        ActionKind::FsOn => Some(true),
        ActionKind::FsOff => Some(false),
        ActionKind::Scan => None,
    };
    Settlement {
        completed: e.completed_at.is_none() && e.progress.is_complete(),
        qualified_fs: fs.filter(|_| e.qualified_at.is_none() && e.progress.is_qualified()),
    }
}

/// What became of one due rule in a scheduler tick.
#[derive(Debug)]
pub struct FireOutcome {
    pub rule: DirectiveBatchId,
    pub fire_key: Option<FireKey>,
    /// The execution started, `None` when another instance had already fired it.
    pub result: Result<Option<BatchExecutionId>, DomainError>,
}

/// How an execution's intake went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BulkReceipt {
    pub meters: i64,
    pub created: i64,
    pub coalesced: i64,
    /// Meters left out: a token command whose token could not be generated.
    pub skipped: i64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct RuleFilter {
    pub grid_id: Option<GridId>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExecutionFilter {
    pub directive_batch_id: Option<DirectiveBatchId>,
    pub grid_id: Option<GridId>,
}

/// A started execution.
#[derive(Debug, Clone, PartialEq)]
pub struct StartedExecution {
    pub id: BatchExecutionId,
    pub order: BatchOrder,
    pub grid_id: GridId,
}

/// Rules and executions in storage.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait BatchRepo: Send + Sync {
    /// The grid, if the scope sees it and it is not deleted.
    async fn grid_setup(
        &self,
        scope: TenantScope,
        grid: GridId,
    ) -> Result<Option<GridSetup>, DomainError>;
    async fn create_rule(
        &self,
        organization: OrganizationId,
        rule: ValidRule,
        by: Requester,
    ) -> Result<DirectiveRule, DomainError>;
    async fn list_rules(
        &self,
        scope: TenantScope,
        filter: RuleFilter,
        page: PageRequest,
    ) -> Result<Vec<DirectiveRule>, DomainError>;
    async fn get_rule(
        &self,
        scope: TenantScope,
        id: DirectiveBatchId,
    ) -> Result<Option<DirectiveRule>, DomainError>;
    /// `None` when gone meanwhile.
    async fn update_rule(
        &self,
        scope: TenantScope,
        id: DirectiveBatchId,
        rule: ValidRule,
        by: Requester,
    ) -> Result<Option<DirectiveRule>, DomainError>;
    /// Soft delete; false when not found.
    async fn delete_rule(
        &self,
        scope: TenantScope,
        id: DirectiveBatchId,
        by: Requester,
    ) -> Result<bool, DomainError>;
    /// Every live rule that may still fire, with its grid's timezone.
    async fn schedulable_rules(&self) -> Result<Vec<DirectiveRule>, DomainError>;
    /// Records a firing, at most once per `(rule, fire_key)`: `None` when that fire is already
    /// recorded (another instance won). In the same transaction: a one-shot rule is marked done
    /// (scheduled fires), an FS rule sets the grid's FS intent, and it is audited.
    async fn start_execution(
        &self,
        rule: &DirectiveRule,
        fire_key: Option<FireKey>,
        by: Requester,
        now: DateTime<Utc>,
    ) -> Result<Option<StartedExecution>, DomainError>;
    async fn list_executions(
        &self,
        scope: TenantScope,
        filter: ExecutionFilter,
        page: PageRequest,
    ) -> Result<Vec<BatchExecution>, DomainError>;
    async fn get_execution(
        &self,
        scope: TenantScope,
        id: BatchExecutionId,
    ) -> Result<Option<BatchExecution>, DomainError>;
    /// Stamps completion and qualification (setting the grid's FS flag), once each.
    async fn settle_execution(
        &self,
        id: BatchExecutionId,
        settlement: Settlement,
        now: DateTime<Utc>,
    ) -> Result<(), DomainError>;
}

/// The bulk intake of one execution.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait BulkIntake: Send + Sync {
    /// The qualifying meters whose intake would create a new token command (they need a
    /// generated STS token first). Without locks: a hint for token generation.
    async fn meters_needing_tokens(
        &self,
        grid: GridId,
        order: BatchOrder,
    ) -> Result<Vec<(MeterId, TokenRequest)>, DomainError>;
    /// Plans ([`plan_meter`]) and stores the intake of every qualifying meter of the grid, with
    /// the meters locked, linking each result to the execution.
    async fn intake(
        &self,
        grid: GridId,
        order: BatchOrder,
        tokens: HashMap<MeterId, StsToken>,
        requested_by: Requester,
    ) -> Result<BulkReceipt, DomainError>;
}

/// Rules, executions and the scheduler's firing.
#[derive(Clone)]
pub struct BatchService {
    repo: Arc<dyn BatchRepo>,
    bulk: Arc<dyn BulkIntake>,
    clock: Arc<dyn Clock>,
    tokens: Option<(Arc<dyn TokenGenerator>, Arc<dyn TokenIssue>)>,
}

fn requester(who: &Principal) -> Requester {
    Requester {
        account: who.account_id,
        api_key: who.api_key_id(),
    }
}

fn staff_only(who: &Principal, what: &'static str) -> Result<(), DomainError> {
    if who.kind == kernel::AccountKind::Member {
        Ok(())
    } else {
        Err(DomainError::NotFound(what))
    }
}

impl BatchService {
    pub fn new(repo: Arc<dyn BatchRepo>, bulk: Arc<dyn BulkIntake>, clock: Arc<dyn Clock>) -> Self {
        Self {
            repo,
            bulk,
            clock,
            tokens: None,
        }
    }

    /// Enables FS rules on single-meter grids (SET_POWER_LIMIT is an STS token).
    pub fn with_tokens(
        mut self,
        generator: Arc<dyn TokenGenerator>,
        issue: Arc<dyn TokenIssue>,
    ) -> Self {
        self.tokens = Some((generator, issue));
        self
    }

    pub async fn create_rule(
        &self,
        who: &Principal,
        draft: RuleDraft,
    ) -> Result<DirectiveRule, DomainError> {
        who.require(Permission::BatchManage)?;
        let rule = draft.validate()?;
        let grid = self
            .repo
            .grid_setup(who.scope(), rule.grid_id)
            .await?
            .ok_or(DomainError::NotFound("grid"))?;
        self.repo
            .create_rule(grid.organization_id, rule, requester(who))
            .await
    }

    pub async fn list_rules(
        &self,
        who: &Principal,
        filter: RuleFilter,
        page: PageRequest,
    ) -> Result<Page<DirectiveRule>, DomainError> {
        who.require(Permission::MeterRead)?;
        if who.kind != kernel::AccountKind::Member {
            return Err(DomainError::Forbidden(
                "directive batches are for staff".into(),
            ));
        }
        let rows = self.repo.list_rules(who.scope(), filter, page).await?;
        Ok(Page::from_rows(rows, page, |r| r.id.get()))
    }

    pub async fn get_rule(
        &self,
        who: &Principal,
        id: DirectiveBatchId,
    ) -> Result<DirectiveRule, DomainError> {
        who.require(Permission::MeterRead)?;
        staff_only(who, "directive batch")?;
        self.repo
            .get_rule(who.scope(), id)
            .await?
            .ok_or(DomainError::NotFound("directive batch"))
    }

    pub async fn update_rule(
        &self,
        who: &Principal,
        id: DirectiveBatchId,
        patch: RulePatch,
    ) -> Result<DirectiveRule, DomainError> {
        who.require(Permission::BatchManage)?;
        let current = self.get_rule(who, id).await?;
        let rule = current.patched(&patch)?;
        self.repo
            .update_rule(who.scope(), id, rule, requester(who))
            .await?
            .ok_or(DomainError::NotFound("directive batch"))
    }

    pub async fn delete_rule(
        &self,
        who: &Principal,
        id: DirectiveBatchId,
    ) -> Result<(), DomainError> {
        who.require(Permission::BatchManage)?;
        staff_only(who, "directive batch")?;
        if self
            .repo
            .delete_rule(who.scope(), id, requester(who))
            .await?
        {
            Ok(())
        } else {
            Err(DomainError::NotFound("directive batch"))
        }
    }

    /// Runs a rule now, whatever its time (one-shot rules stay as they are).
    pub async fn run_now(
        &self,
        who: &Principal,
        id: DirectiveBatchId,
    ) -> Result<BatchExecution, DomainError> {
        who.require(Permission::BatchManage)?;
        let rule = self.get_rule(who, id).await?;
        let started = self
            .execute(&rule, None, requester(who))
            .await?
            .ok_or_else(|| DomainError::Internal("a manual run was refused as a repeat".into()))?;
        self.execution(TenantScope::All, started).await
    }

    /// Fires every rule due at `now` ([`due_fire`]). One rule's failure does not stop the
    /// others: each fire's outcome is answered for the caller to log and count.
    pub async fn fire_due(&self, now: DateTime<Utc>) -> Result<Vec<FireOutcome>, DomainError> {
        let rules = self.repo.schedulable_rules().await?;
        let mut outcomes = Vec::new();
        for rule in rules {
            let key = match (rule.valid(), parse_timezone(&rule.timezone)) {
                (Ok(valid), Ok(tz)) => {
                    due_fire(&valid, tz, rule.updated_at, rule.done_at.is_some(), now)
                }
                (Err(e), _) | (_, Err(e)) => {
                    outcomes.push(FireOutcome {
                        rule: rule.id,
                        fire_key: None,
                        result: Err(e),
                    });
                    None
                }
            };
            let Some(key) = key else { continue };
            let result = self.execute(&rule, Some(key), Requester::default()).await;
            outcomes.push(FireOutcome {
                rule: rule.id,
                fire_key: Some(key),
                result,
            });
        }
        Ok(outcomes)
    }

    /// Records the fire, then takes in every qualifying meter. `None`: that fire was already
    /// recorded.
    async fn execute(
        &self,
        rule: &DirectiveRule,
        fire_key: Option<FireKey>,
        by: Requester,
    ) -> Result<Option<BatchExecutionId>, DomainError> {
        // Refuse before anything is recorded when the commands would need a token generator
        // that is not configured (FS rules on single-meter grids).
        let setup = self
            .repo
            .grid_setup(TenantScope::All, rule.grid_id)
            .await?
            .ok_or(DomainError::NotFound("grid"))?;
        let (kind, _) = command_for(rule.valid()?.action, setup.uses_dual_meter_setup, 0);
        if kind.needs_generated_token() && self.tokens.is_none() {
            return Err(DomainError::Unavailable(
                "FS rules on single-meter grids send SET_POWER_LIMIT tokens, and no STS token generator is configured".into(),
            ));
        }
        let now = self.clock.now();
        let Some(started) = self.repo.start_execution(rule, fire_key, by, now).await? else {
            return Ok(None);
        };
        let tokens = self.generate_tokens(&started).await?;
        self.bulk
            .intake(started.grid_id, started.order, tokens, by)
            .await?;
        Ok(Some(started.id))
    }

    /// STS tokens for the meters that will get a new SET_POWER_LIMIT (single-meter FS rules).
    async fn generate_tokens(
        &self,
        started: &StartedExecution,
    ) -> Result<HashMap<MeterId, StsToken>, DomainError> {
        let (kind, _) = command_for(started.order.action, started.order.uses_dual_meter_setup, 0);
        if !kind.needs_generated_token() {
            return Ok(HashMap::new());
        }
        let needing = self
            .bulk
            .meters_needing_tokens(started.grid_id, started.order)
            .await?;
        if needing.is_empty() {
            return Ok(HashMap::new());
        }
        let (generator, issue) = self.tokens.as_ref().ok_or_else(|| {
            DomainError::Unavailable("no STS token generator is configured".into())
        })?;
        let mut tokens = HashMap::new();
        for (meter, mut request) in needing {
            let generated = async {
                request.decoder_key = issue.decoder_key(meter).await?;
                request.issued_at = issue.reserve_issue_time(meter, self.clock.now()).await?;
                generator.generate(request).await
            }
            .await;
            match generated {
                Ok(token) => {
                    tokens.insert(meter, token);
                }
                // The meter is left out of this execution (counted as skipped); the reconciler
                // closes the drift later.
                Err(e) => {
                    tracing::warn!(meter = %meter, error = %e, "no STS token for a batch command");
                }
            }
        }
        Ok(tokens)
    }

    /// The execution with fresh progress, stamping completion and qualification on the way.
    async fn execution(
        &self,
        scope: TenantScope,
        id: BatchExecutionId,
    ) -> Result<BatchExecution, DomainError> {
        let mut e = self
            .repo
            .get_execution(scope, id)
            .await?
            .ok_or(DomainError::NotFound("directive batch execution"))?;
        let settlement = settle(&e);
        if settlement != Settlement::default() {
            let now = self.clock.now();
            self.repo.settle_execution(id, settlement, now).await?;
            if settlement.completed {
                e.completed_at = Some(now);
            }
            if settlement.qualified_fs.is_some() {
                e.qualified_at = Some(now);
            }
        }
        Ok(e)
    }

    pub async fn get_execution(
        &self,
        who: &Principal,
        id: BatchExecutionId,
    ) -> Result<BatchExecution, DomainError> {
        who.require(Permission::MeterRead)?;
        staff_only(who, "directive batch execution")?;
        self.execution(who.scope(), id).await
    }

    pub async fn list_executions(
        &self,
        who: &Principal,
        filter: ExecutionFilter,
        page: PageRequest,
    ) -> Result<Page<BatchExecution>, DomainError> {
        who.require(Permission::MeterRead)?;
        if who.kind != kernel::AccountKind::Member {
            return Err(DomainError::Forbidden(
                "directive batches are for staff".into(),
            ));
        }
        let mut rows = self.repo.list_executions(who.scope(), filter, page).await?;
        let now = self.clock.now();
        for e in &mut rows {
            let settlement = settle(e);
            if settlement != Settlement::default() {
                self.repo.settle_execution(e.id, settlement, now).await?;
                if settlement.completed {
                    e.completed_at = Some(now);
                }
                if settlement.qualified_fs.is_some() {
                    e.qualified_at = Some(now);
                }
            }
        }
        Ok(Page::from_rows(rows, page, |e| e.id.get()))
    }
}

/// The token a new SET_POWER_LIMIT for `meter` needs (issue time and decoder key are filled in
/// when it is generated).
pub fn token_request(
    meter: &BatchMeter,
    external_reference: String,
    power_limit_w: i32,
    now: DateTime<Utc>,
) -> TokenRequest {
    TokenRequest {
        meter_id: meter.meter_id,
        external_reference,
        protocol: meter.facts.protocol,
        decoder_key: None,
        kind: TokenKind::SetPowerLimit {
            watts: power_limit_w,
        },
        issued_at: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::InteractionId;
    use crate::intake::intended_value;
    use crate::shadow::{AttributeValue, RelayState};
    use InteractionStatus as S;
    use InteractionType as T;
    use grids::vocab::CommunicationProtocol as P;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn rule(time: &str, action: BatchAction) -> ValidRule {
        ValidRule {
            grid_id: GridId(1),
            local_time: parse_local_time(time).unwrap(),
            is_repeating: true,
            action,
        }
    }

    const LONG_AGO: fn() -> DateTime<Utc> = || utc(2020, 1, 1, 0, 0);

    #[test]
    fn local_time_is_strict_hh_mm() {
        assert_eq!(parse_local_time("18:00"), NaiveTime::from_hms_opt(18, 0, 0));
        assert_eq!(parse_local_time("00:59"), NaiveTime::from_hms_opt(0, 59, 0));
        for bad in [
            "24:00", "18:60", "8:00", "18:0", "18-00", "18:00:00", "", "ab:cd", "+1:00",
        ] {
            assert_eq!(parse_local_time(bad), None, "{bad}");
        }
        assert_eq!(
            format_local_time(NaiveTime::from_hms_opt(7, 5, 0).unwrap()),
            "07:05"
        );
    }

    #[test]
    fn validation_reports_every_problem() {
        let draft = RuleDraft {
            grid_id: GridId(1),
            local_time: "25:00".into(),
            is_repeating: true,
            action: ActionKind::Scan,
            scan_kind: Some(T::TurnOff),
        };
        match draft.validate().unwrap_err() {
            DomainError::Validation(errs) => {
                let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
                assert_eq!(fields, ["local_time", "scan_kind"]);
            }
            other => panic!("{other:?}"),
        }
        let fs_with_kind = RuleDraft {
            local_time: "18:00".into(),
            action: ActionKind::FsOn,
            scan_kind: Some(T::ReadCredit),
            ..draft.clone()
        };
        assert!(fs_with_kind.validate().is_err());
        let scan_without = RuleDraft {
            local_time: "18:00".into(),
            scan_kind: None,
            ..draft.clone()
        };
        assert!(scan_without.validate().is_err());
        let ok = RuleDraft {
            local_time: "18:00".into(),
            scan_kind: Some(T::ReadVoltage),
            ..draft
        }
        .validate()
        .unwrap();
        assert_eq!(ok.action, BatchAction::Scan(T::ReadVoltage));
    }

    #[test]
    fn a_patch_switching_to_fs_drops_the_scan_kind() {
        let stored = DirectiveRule {
            id: DirectiveBatchId(1),
            organization_id: OrganizationId(1),
            grid_id: GridId(1),
            local_time: "06:30".into(),
            timezone: "Africa/Lagos".into(),
            is_repeating: true,
            action: ActionKind::Scan,
            scan_kind: Some(T::ReadCredit),
            done_at: None,
            last_fired_at: None,
            created_at: LONG_AGO(),
            updated_at: LONG_AGO(),
        };
        let patched = stored
            .patched(&RulePatch {
                action: Some(ActionKind::FsOff),
                ..RulePatch::default()
            })
            .unwrap();
        assert_eq!(patched.action, BatchAction::Fs { on: false });
        assert_eq!(patched.local_time, parse_local_time("06:30").unwrap());
        assert!(
            stored
                .patched(&RulePatch {
                    local_time: Some("6:30".into()),
                    ..RulePatch::default()
                })
                .is_err()
        );
    }

    #[test]
    fn lagos_six_pm_is_five_pm_utc() {
        let tz: Tz = "Africa/Lagos".parse().unwrap();
        let r = rule("18:00", BatchAction::Fs { on: true });
        assert_eq!(
            due_fire(&r, tz, LONG_AGO(), false, utc(2026, 11, 27, 16, 59)),
            None
        );
        let key = due_fire(&r, tz, LONG_AGO(), false, utc(2026, 11, 27, 17, 0)).unwrap();
        assert_eq!(key.to_string(), "2026-11-27T18:00");
        // Within the catch-up window: the same fire (the store keeps it to one).
        assert_eq!(
            due_fire(&r, tz, LONG_AGO(), false, utc(2026, 11, 27, 17, 9)),
            Some(key)
        );
        assert_eq!(
            due_fire(&r, tz, LONG_AGO(), false, utc(2026, 11, 27, 17, 10)),
            None
        );
        // Done one-shot rules never fire; a rule changed after its time waits for tomorrow.
        assert_eq!(
            due_fire(&r, tz, LONG_AGO(), true, utc(2026, 11, 27, 17, 1)),
            None
        );
        assert_eq!(
            due_fire(
                &r,
                tz,
                utc(2026, 11, 27, 17, 0) + Duration::seconds(1),
                false,
                utc(2026, 11, 27, 17, 1)
            ),
            None
        );
    }

    #[test]
    fn a_fire_just_before_midnight_is_caught_after_it() {
        let tz: Tz = "UTC".parse().unwrap();
        let r = rule("23:58", BatchAction::Scan(T::ReadCredit));
        let key = due_fire(&r, tz, LONG_AGO(), false, utc(2026, 11, 28, 0, 3)).unwrap();
        assert_eq!(key.to_string(), "2026-11-27T23:58");
    }

    #[test]
    fn dst_gap_fires_after_the_gap_and_overlap_fires_once() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        // 2026-03-29: 02:00 → 03:00 local. 02:30 does not exist: it fires at 03:00 CEST (01:00 UTC).
        let r = rule("02:30", BatchAction::Fs { on: false });
        assert_eq!(
            fire_instant(
                tz,
                NaiveDate::from_ymd_opt(2026, 3, 29).unwrap(),
                r.local_time
            ),
            Some(utc(2026, 3, 29, 1, 0))
        );
        let key = due_fire(&r, tz, LONG_AGO(), false, utc(2026, 3, 29, 1, 2)).unwrap();
        assert_eq!(key.to_string(), "2026-03-29T02:30");
        // 2026-10-25: 03:00 → 02:00 local; 02:30 happens twice, the fire is the first (00:30 UTC)
        // and the second 02:30 (01:30 UTC) is outside its window.
        let at = utc(2026, 10, 25, 0, 30);
        assert_eq!(
            fire_instant(
                tz,
                NaiveDate::from_ymd_opt(2026, 10, 25).unwrap(),
                r.local_time
            ),
            Some(at)
        );
        assert!(due_fire(&r, tz, LONG_AGO(), false, at).is_some());
        assert_eq!(
            due_fire(&r, tz, LONG_AGO(), false, utc(2026, 10, 25, 1, 30)),
            None
        );
    }

    #[test]
    fn fs_commands_per_grid_setup() {
        let on = BatchAction::Fs { on: true };
        let off = BatchAction::Fs { on: false };
        assert_eq!(command_for(on, true, 200), (T::TurnOn, None));
        assert_eq!(command_for(off, true, 200), (T::TurnOff, None));
        assert_eq!(command_for(on, false, 200), (T::SetPowerLimit, Some(0)));
        assert_eq!(command_for(off, false, 200), (T::SetPowerLimit, Some(200)));
        assert_eq!(
            command_for(BatchAction::Scan(T::ReadPower), true, 200),
            (T::ReadPower, None)
        );
        assert!(qualifies(on, true, MeterType::Fs));
        assert!(!qualifies(on, true, MeterType::Hps));
        assert!(qualifies(on, false, MeterType::Hps));
        assert!(qualifies(
            BatchAction::Scan(T::ReadCredit),
            true,
            MeterType::Hps
        ));
    }

    fn meter(unfinished: Vec<PendingInteraction>) -> BatchMeter {
        BatchMeter {
            meter_id: MeterId(5),
            meter_type: MeterType::Fs,
            hps_mode_power_limit_w: 200,
            facts: MeterFacts {
                protocol: P::CalinV1,
                firmware_version: None,
                last_seen_at: None,
                dcu_id: None,
            },
            unfinished,
            shadow: None,
        }
    }

    fn pending(id: i64, kind: T, status: S) -> PendingInteraction {
        PendingInteraction {
            id: InteractionId(id),
            meter_id: MeterId(5),
            kind,
            status,
            intended: intended_value(kind, None),
            commissioning_id: None,
            expires_at: None,
            parked_for_retry: false,
            created_at: utc(2026, 11, 27, 10, 0),
        }
    }

    fn order(action: BatchAction) -> BatchOrder {
        BatchOrder {
            execution: BatchExecutionId(9),
            action,
            uses_dual_meter_setup: true,
        }
    }

    #[test]
    fn planning_coalesces_scans_and_supersedes_contradicting_switches() {
        let now = utc(2026, 11, 27, 12, 0);
        let policy = IntakePolicy::default();
        let m = meter(vec![pending(1, T::ReadCredit, S::Queued)]);
        let c = plan_meter(
            &policy,
            order(BatchAction::Scan(T::ReadCredit)),
            &m,
            None,
            None,
            Requester::default(),
            now,
        )
        .unwrap();
        assert_eq!(
            c.plan.action,
            IntakeAction::Coalesce {
                into: InteractionId(1)
            }
        );
        assert_eq!(c.shadow, None);

        let m = meter(vec![pending(2, T::TurnOff, S::Queued)]);
        let c = plan_meter(
            &policy,
            order(BatchAction::Fs { on: true }),
            &m,
            None,
            None,
            Requester::default(),
            now,
        )
        .unwrap();
        assert!(c.plan.creates());
        assert_eq!(c.plan.supersede, vec![InteractionId(2)]);
        assert_eq!(c.status, S::Queued);
        assert_eq!(c.request.origin, Origin::Batch);
        assert_eq!(c.request.batch_execution_id, Some(BatchExecutionId(9)));
        let shadow = c.shadow.unwrap();
        let desired = shadow.attributes[&crate::kind::Attribute::Relay]
            .desired
            .clone()
            .unwrap();
        assert_eq!(desired.value, AttributeValue::Relay(RelayState::On));
        assert_eq!(desired.by_ref, Some(9));
        assert_eq!(c.shadow_loaded_version, 0);
    }

    #[test]
    fn planning_runs_the_gatekeeper() {
        let now = utc(2026, 11, 27, 12, 0);
        let dark = GridFacts {
            is_energised: false,
            gateways: vec![],
        };
        let c = plan_meter(
            &IntakePolicy::default(),
            order(BatchAction::Scan(T::ReadVoltage)),
            &meter(vec![]),
            Some(&dark),
            None,
            Requester::default(),
            now,
        )
        .unwrap();
        assert_eq!(c.status, S::Suspended);
        assert_eq!(
            c.history.unwrap().code.as_deref(),
            Some("grid_not_energised")
        );
    }

    #[test]
    fn progress_buckets_completion_and_qualification() {
        let mut p = ExecutionProgress::default();
        p.add(S::Queued, 2);
        p.add(S::Processing, 1);
        p.add(S::Successful, 3);
        p.add(S::Aborted, 1);
        p.add(S::Superseded, 1);
        p.add(S::Expired, 2);
        assert_eq!(
            (
                p.total,
                p.pending,
                p.in_flight,
                p.successful,
                p.failed,
                p.superseded,
                p.expired
            ),
            (10, 2, 1, 3, 1, 1, 2)
        );
        assert!(!p.is_complete());
        assert!(!p.is_qualified());
        // 7 of 14: half is enough.
        p.add(S::Successful, 4);
        assert!(p.is_qualified());

        let mut e = BatchExecution {
            id: BatchExecutionId(1),
            organization_id: OrganizationId(1),
            grid_id: GridId(1),
            directive_batch_id: DirectiveBatchId(1),
            action: ActionKind::FsOff,
            scan_kind: None,
            fire_key: None,
            meter_count: 2,
            created_count: 2,
            coalesced_count: 0,
            skipped_count: 0,
            progress: ExecutionProgress::default(),
            completed_at: None,
            qualified_at: None,
            created_at: LONG_AGO(),
        };
        e.progress.add(S::Successful, 1);
        e.progress.add(S::Queued, 1);
        assert_eq!(
            settle(&e),
            Settlement {
                completed: false,
                qualified_fs: Some(false)
            }
        );
        e.qualified_at = Some(LONG_AGO());
        e.progress = ExecutionProgress::default();
        e.progress.add(S::Successful, 1);
        e.progress.add(S::Failed, 1);
        assert_eq!(
            settle(&e),
            Settlement {
                completed: true,
                qualified_fs: None
            }
        );
        e.action = ActionKind::Scan;
        e.qualified_at = None;
        e.completed_at = Some(LONG_AGO());
        assert_eq!(settle(&e), Settlement::default());
        // An execution over no meters is complete at once and never qualifies.
        assert!(ExecutionProgress::default().is_complete());
        assert!(!ExecutionProgress::default().is_qualified());
    }

    #[test]
    fn retirable_statuses_come_from_the_state_machine() {
        assert_eq!(
            supersedable_statuses(),
            vec![
                S::Queued,
                S::Suspended,
                S::Deferred,
                S::Processing,
                S::Verifying
            ]
        );
        assert_eq!(
            expirable_statuses(),
            vec![S::Queued, S::Suspended, S::Deferred, S::Processing]
        );
    }

    fn stored(id: i64, timezone: &str, action: ActionKind) -> DirectiveRule {
        DirectiveRule {
            id: DirectiveBatchId(id),
            organization_id: OrganizationId(1),
            grid_id: GridId(3),
            local_time: "18:00".into(),
            timezone: timezone.into(),
            is_repeating: true,
            action,
            scan_kind: None,
            done_at: None,
            last_fired_at: None,
            created_at: LONG_AGO(),
            updated_at: LONG_AGO(),
        }
    }

    fn setup(dual: bool) -> GridSetup {
        GridSetup {
            grid_id: GridId(3),
            organization_id: OrganizationId(1),
            timezone: "Africa/Lagos".into(),
            uses_dual_meter_setup: dual,
        }
    }

    fn clock(at: DateTime<Utc>) -> Arc<dyn Clock> {
        let mut clock = crate::ports::MockClock::new();
        clock.expect_now().return_const(at);
        Arc::new(clock)
    }

    #[tokio::test]
    async fn a_tick_reports_every_due_rule_and_goes_on_after_a_broken_one() {
        let now = utc(2026, 11, 27, 17, 0);
        let mut repo = MockBatchRepo::new();
        repo.expect_schedulable_rules().returning(|| {
            Ok(vec![
                stored(1, "Mars/Olympus", ActionKind::FsOff),
                stored(2, "Africa/Lagos", ActionKind::FsOff),
                stored(3, "Asia/Tokyo", ActionKind::FsOff),
            ])
        });
        repo.expect_grid_setup()
            .returning(|_, _| Ok(Some(setup(true))));
        repo.expect_start_execution()
            .times(1)
            .withf(|r, key, by, _| {
                r.id == DirectiveBatchId(2)
                    && key.map(|k| k.to_string()).as_deref() == Some("2026-11-27T18:00")
                    && *by == Requester::default()
            })
            .returning(|r, _, _, _| {
                Ok(Some(StartedExecution {
                    id: BatchExecutionId(7),
                    grid_id: r.grid_id,
                    order: BatchOrder {
                        execution: BatchExecutionId(7),
                        action: BatchAction::Fs { on: false },
                        uses_dual_meter_setup: true,
                    },
                }))
            });
        let mut bulk = MockBulkIntake::new();
        bulk.expect_intake()
            .times(1)
            .withf(|grid, order, tokens, _| {
                *grid == GridId(3) && order.execution == BatchExecutionId(7) && tokens.is_empty()
            })
            .returning(|_, _, _, _| Ok(BulkReceipt::default()));
        let service = BatchService::new(Arc::new(repo), Arc::new(bulk), clock(now));
        let outcomes = service.fire_due(now).await.unwrap();
        // The broken timezone is reported, Lagos fires, Tokyo (18:00 is 09:00 UTC) is not due.
        assert_eq!(outcomes.len(), 2, "{outcomes:?}");
        assert_eq!(outcomes[0].rule, DirectiveBatchId(1));
        assert!(outcomes[0].result.is_err());
        assert_eq!(outcomes[1].rule, DirectiveBatchId(2));
        assert_eq!(
            outcomes[1].result.as_ref().ok(),
            Some(&Some(BatchExecutionId(7)))
        );
    }

    #[tokio::test]
    async fn single_meter_fs_without_a_token_generator_records_nothing() {
        let now = utc(2026, 11, 27, 17, 0);
        let mut repo = MockBatchRepo::new();
        repo.expect_schedulable_rules()
            .returning(|| Ok(vec![stored(2, "Africa/Lagos", ActionKind::FsOn)]));
        repo.expect_grid_setup()
            .returning(|_, _| Ok(Some(setup(false))));
        repo.expect_start_execution().times(0);
        let mut bulk = MockBulkIntake::new();
        bulk.expect_intake().times(0);
        let service = BatchService::new(Arc::new(repo), Arc::new(bulk), clock(now));
        let outcomes = service.fire_due(now).await.unwrap();
        assert!(matches!(
            outcomes[0].result,
            Err(DomainError::Unavailable(_))
        ));
    }
}
