//! The reconciliation loop (§6.4) as a service: one pass at a time across all instances (a
//! single-flight lock), per grid: suspension recovery once the grid can be reached again, then
//! corrective commands for drifted shadows under the grid's mode (OFF / SHADOW / ON).

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Duration;
use grids::meters::MeterRepo;
use grids::state::GridStateRepo;
use kernel::{DomainError, GridId, MeterId, TenantScope};
use serde::Serialize;

use crate::commands::CommandService;
use crate::gatekeeper::{Admission, AdmissionContext, GridFacts, MeterFacts, gatekeeper};
use crate::kind::{Attribute, InteractionType};
use crate::ports::{Clock, HistoryEntry, InteractionRepo, ShadowRepo};
use crate::reconcile::{
    PlannedCommand, ReconcilePolicy, ReconciliationMode, grid_gate, reconcile, recover_suspended,
};
use crate::shadow::{AttributeValue, MeterShadow};
use crate::status::{InteractionStatus, Transition};

/// Held while a pass runs; [`SingleFlight::release`] frees it for the next pass.
#[async_trait]
pub trait SingleFlight: Send {
    async fn release(self: Box<Self>);
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait ReconcileRepo: Send + Sync {
    /// Every grid with its reconciliation mode.
    async fn grid_modes(&self) -> Result<Vec<(GridId, ReconciliationMode)>, DomainError>;
    /// `None` when another pass (on any instance) holds the lock.
    async fn try_single_flight(&self) -> Result<Option<Box<dyn SingleFlight>>, DomainError>;
    /// Batch activity on the grid within `window` of now, either side: executions that ran and
    /// scheduled fires still to come (the loop must not fight a batch).
    async fn batch_times(
        &self,
        grid: GridId,
        window: Duration,
    ) -> Result<Vec<chrono::DateTime<chrono::Utc>>, DomainError>;
    /// The grid's mode (`None`: no such grid in scope).
    async fn mode(
        &self,
        scope: TenantScope,
        grid: GridId,
    ) -> Result<Option<ReconciliationMode>, DomainError>;
    /// Sets the grid's mode, audited as `by` (`None`: no such grid in scope).
    async fn set_mode(
        &self,
        scope: TenantScope,
        grid: GridId,
        mode: ReconciliationMode,
        by: crate::ports::Requester,
    ) -> Result<Option<ReconciliationMode>, DomainError>;
    /// Keeps the newest SHADOW-mode pass of the grid (replacing the previous one). Changing the
    /// grid's mode drops it: it describes what that mode would have done.
    async fn record_shadow_report(
        &self,
        grid: GridId,
        report: ShadowReport,
    ) -> Result<(), DomainError>;
    /// The newest SHADOW-mode pass of the grid, if any since its mode last changed.
    async fn shadow_report(
        &self,
        scope: TenantScope,
        grid: GridId,
    ) -> Result<Option<ShadowReport>, DomainError>;
}

/// A grid's reconciliation mode, as operators read and set it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct GridReconciliation {
    pub grid_id: GridId,
    pub mode: ReconciliationMode,
    /// In SHADOW mode: what the newest pass would have sent (nothing is sent). Absent in other
    /// modes and before the first pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_report: Option<ShadowReport>,
}

/// Findings kept per SHADOW report; `total` still counts them all.
pub const SHADOW_FINDINGS_KEPT: usize = 500;

/// What a SHADOW-mode pass over one grid would have corrected.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ShadowReport {
    pub observed_at: chrono::DateTime<chrono::Utc>,
    /// Corrective commands the pass would have created.
    pub total: usize,
    /// The first [`SHADOW_FINDINGS_KEPT`] of them, by meter.
    pub findings: Vec<ShadowFinding>,
}

/// One corrective command a SHADOW-mode pass would have created.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ShadowFinding {
    pub meter_id: MeterId,
    pub attribute: Attribute,
    pub command: InteractionType,
    pub desired: AttributeValue,
    pub reported: Option<AttributeValue>,
    /// Which corrective attempt it would have been (cooldowns and caps apply as in ON mode).
    pub attempt: u32,
}

impl ShadowFinding {
    fn of(planned: &PlannedCommand) -> Self {
        ShadowFinding {
            meter_id: planned.meter_id,
            attribute: planned.attribute,
            command: planned.kind,
            desired: planned.desired.clone(),
            reported: planned.reported.clone(),
            attempt: planned.attempt,
        }
    }
}

/// Reading and setting grids' reconciliation modes with the caller's permissions.
#[derive(Clone)]
pub struct ReconciliationSettings {
    repo: Arc<dyn ReconcileRepo>,
}

impl ReconciliationSettings {
    pub fn new(repo: Arc<dyn ReconcileRepo>) -> Self {
        Self { repo }
    }

    pub async fn get(
        &self,
        who: &kernel::Principal,
        grid: GridId,
    ) -> Result<GridReconciliation, DomainError> {
        who.require(kernel::Permission::GridRead)?;
        let mode = self
            .repo
            .mode(who.scope(), grid)
            .await?
            .ok_or(DomainError::NotFound("grid"))?;
        let shadow_report = match mode {
            ReconciliationMode::Shadow => self.repo.shadow_report(who.scope(), grid).await?,
            ReconciliationMode::Off | ReconciliationMode::On => None,
        };
        Ok(GridReconciliation {
            grid_id: grid,
            mode,
            shadow_report,
        })
    }

    /// OFF stops corrections, SHADOW reports them without sending, ON sends them.
    pub async fn set(
        &self,
        who: &kernel::Principal,
        grid: GridId,
        mode: ReconciliationMode,
    ) -> Result<GridReconciliation, DomainError> {
        who.require(kernel::Permission::GridManage)?;
        let by = crate::ports::Requester {
            account: who.account_id,
            api_key: who.api_key_id(),
        };
        let mode = self
            .repo
            .set_mode(who.scope(), grid, mode, by)
            .await?
            .ok_or(DomainError::NotFound("grid"))?;
        Ok(GridReconciliation {
            grid_id: grid,
            mode,
            shadow_report: None,
        })
    }
}

/// What one pass did, for metrics, logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    /// False when another pass was running.
    pub ran: bool,
    pub grids: usize,
    pub resumed: usize,
    pub superseded: usize,
    pub expired: usize,
    pub aborted: usize,
    /// Corrective commands created (ON mode).
    pub corrected: usize,
    /// Corrective commands only reported (SHADOW mode).
    pub reported: usize,
    /// SHADOW reports that could not be kept (the pass went on).
    pub shadow_report_errors: usize,
}

#[derive(Clone)]
pub struct Reconciler {
    repo: Arc<dyn ReconcileRepo>,
    interactions: Arc<dyn InteractionRepo>,
    shadows: Arc<dyn ShadowRepo>,
    meters: Arc<dyn MeterRepo>,
    grids: Arc<dyn GridStateRepo>,
    commands: CommandService,
    clock: Arc<dyn Clock>,
    policy: ReconcilePolicy,
}

/// Drifted shadows read per page.
const PAGE: i64 = 500;

impl Reconciler {
    pub fn new(
        repo: Arc<dyn ReconcileRepo>,
        interactions: Arc<dyn InteractionRepo>,
        shadows: Arc<dyn ShadowRepo>,
        meters: Arc<dyn MeterRepo>,
        grids: Arc<dyn GridStateRepo>,
        commands: CommandService,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            repo,
            interactions,
            shadows,
            meters,
            grids,
            commands,
            clock,
            policy: ReconcilePolicy::default(),
        }
    }

    pub fn with_policy(mut self, policy: ReconcilePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// One pass over every grid, unless another is running.
    pub async fn run_once(&self) -> Result<ReconcileReport, DomainError> {
        let Some(lock) = self.repo.try_single_flight().await? else {
            return Ok(ReconcileReport::default());
        };
        let outcome = self.pass().await;
        lock.release().await;
        outcome
    }

    async fn pass(&self) -> Result<ReconcileReport, DomainError> {
        let mut report = ReconcileReport {
            ran: true,
            ..ReconcileReport::default()
        };
        for (grid, mode) in self.repo.grid_modes().await? {
            report.grids += 1;
            let Some(state) = self.grids.state(TenantScope::All, grid).await? else {
                continue;
            };
            let facts = GridFacts::of(&state);
            let reachable = facts.is_energised && facts.gateways.iter().any(|g| g.is_online);
            if reachable {
                self.recover(grid, &facts, &mut report).await?;
            }
            let now = self.clock.now();
            let quiet = Duration::hours(1);
            let batches = match mode {
                ReconciliationMode::Off => Vec::new(),
                ReconciliationMode::Shadow | ReconciliationMode::On => {
                    self.repo.batch_times(grid, quiet).await?
                }
            };
            if grid_gate(mode, &facts, &batches, quiet, now).is_ok() {
                let mut findings = ShadowReport {
                    observed_at: now,
                    total: 0,
                    findings: Vec::new(),
                };
                self.correct(grid, mode, &mut report, &mut findings).await?;
                if mode == ReconciliationMode::Shadow {
                    // Only a report: the other grids' reconciliation goes on without it.
                    if let Err(e) = self.repo.record_shadow_report(grid, findings).await {
                        report.shadow_report_errors += 1;
                        tracing::warn!(grid = grid.get(), error = %e, "could not keep the SHADOW report");
                    }
                }
            }
        }
        Ok(report)
    }

    /// Suspension recovery: at most one command per attribute survives, stale reads expire, and
    /// the survivors go through the gatekeeper again.
    async fn recover(
        &self,
        grid: GridId,
        facts: &GridFacts,
        report: &mut ReconcileReport,
    ) -> Result<(), DomainError> {
        let suspended = self.interactions.suspended_in_grid(grid).await?;
        if suspended.is_empty() {
            return Ok(());
        }
        let mut meters: Vec<MeterId> = suspended.iter().map(|r| r.meter_id).collect();
        meters.sort_unstable();
        meters.dedup();
        let mut shadows: Vec<MeterShadow> = Vec::new();
        for m in &meters {
            if let Some(s) = self.shadows.get(*m).await? {
                shadows.push(s);
            }
        }
        let now = self.clock.now();
        let plan = recover_suspended(&suspended, &shadows, now);
        let retire = |reason: &str, code: &str| HistoryEntry {
            at: now,
            status: InteractionStatus::Suspended,
            reason: reason.into(),
            code: Some(code.into()),
            is_final: true,
        };
        for id in plan.supersede {
            let entry = retire(
                "superseded on recovery: a newer intent replaced it",
                "superseded_on_recovery",
            );
            if self
                .interactions
                .transition(
                    id,
                    InteractionStatus::Suspended,
                    Transition::Superseded,
                    Some(entry),
                )
                .await?
                .is_some()
            {
                report.superseded += 1;
            }
        }
        for id in plan.expire {
            let entry = retire("expired while suspended", "expired");
            if self
                .interactions
                .transition(
                    id,
                    InteractionStatus::Suspended,
                    Transition::Expired,
                    Some(entry),
                )
                .await?
                .is_some()
            {
                report.expired += 1;
            }
        }
        for id in plan.readjudicate {
            let Some(row) = suspended.iter().find(|r| r.id == id) else {
                continue;
            };
            let Some(meter) = self.meters.get(TenantScope::All, row.meter_id).await? else {
                continue;
            };
            let admission = gatekeeper(
                &MeterFacts::of(&meter),
                Some(facts),
                row.kind,
                AdmissionContext {
                    from_commissioning: row.commissioning_id.is_some(),
                    is_retry: false,
                    after_grid_transition: true,
                },
                now,
            );
            let (event, entry) = match &admission {
                Admission::Queue => (Transition::Resume, None),
                Admission::Suspend(_) => continue,
                Admission::Abort(r) => (
                    Transition::Cancelled,
                    Some(HistoryEntry::hold(now, InteractionStatus::Aborted, r, true)),
                ),
                Admission::Defer { reason, .. } => (
                    Transition::Defer,
                    Some(HistoryEntry::hold(
                        now,
                        InteractionStatus::Deferred,
                        reason,
                        false,
                    )),
                ),
            };
            let moved = self
                .interactions
                .transition(id, InteractionStatus::Suspended, event, entry)
                .await?;
            match (moved, event) {
                (Some(_), Transition::Resume) => report.resumed += 1,
                (Some(_), Transition::Cancelled) => report.aborted += 1,
                _ => {}
            }
        }
        Ok(())
    }

    /// Corrective commands for the grid's drifted shadows.
    async fn correct(
        &self,
        grid: GridId,
        mode: ReconciliationMode,
        report: &mut ReconcileReport,
        would: &mut ShadowReport,
    ) -> Result<(), DomainError> {
        let mut after = None;
        loop {
            let page = self.shadows.drifted(grid, after, PAGE).await?;
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = Some(last.meter_id);
            let full = page.len() as i64 == PAGE;
            for shadow in page {
                let pending = self.interactions.unfinished(shadow.meter_id).await?;
                let now = self.clock.now();
                for planned in reconcile(&shadow, &pending, mode, &self.policy, now) {
                    if !planned.execute {
                        tracing::info!(
                            meter = shadow.meter_id.get(),
                            attribute = planned.attribute.as_str(),
                            command = planned.kind.as_str(),
                            "reconciler (shadow mode) would correct drift"
                        );
                        report.reported += 1;
                        would.total += 1;
                        if would.findings.len() < SHADOW_FINDINGS_KEPT {
                            would.findings.push(ShadowFinding::of(&planned));
                        }
                        continue;
                    }
                    let (view, _) = match self.commands.submit(planned.to_request(), None).await {
                        Ok(created) => created,
                        Err(e) => {
                            tracing::warn!(meter = shadow.meter_id.get(), error = %e, "reconciler could not create a corrective command");
                            continue;
                        }
                    };
                    self.note_attempt(shadow.meter_id, &planned, view.id)
                        .await?;
                    report.corrected += 1;
                }
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// Counts the corrective attempt on the shadow (cooldown and cap).
    async fn note_attempt(
        &self,
        meter: MeterId,
        planned: &crate::reconcile::PlannedCommand,
        interaction: crate::ids::InteractionId,
    ) -> Result<(), DomainError> {
        for _ in 0..5 {
            let Some(mut shadow) = self.shadows.get(meter).await? else {
                return Ok(());
            };
            let loaded = shadow.version;
            shadow.record_reconcile(planned.attribute, interaction, self.clock.now());
            match self.shadows.save(shadow, loaded).await {
                Ok(()) => return Ok(()),
                Err(DomainError::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
