//! Commands operators send to meters: intake (gatekeeper, coalescing, supersession, shadow
//! intent) stored in one transaction, and the read side (list, get, cancel).

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use grids::meters::MeterRepo;
use grids::state::GridStateRepo;
use kernel::{
    DomainError, GridId, MeterId, OrganizationId, Page, PageRequest, Permission, Principal,
    TenantScope,
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::gatekeeper::{Admission, AdmissionContext, GridFacts, MeterFacts, gatekeeper};
use crate::ids::InteractionId;
use crate::intake::{IntakeAction, IntakePolicy, IntakeRequest};
use crate::kind::{InteractionType, Origin};
use crate::ports::TokenGenerator;
use crate::ports::{Clock, HistoryEntry, IntakeCommit, InteractionRepo, ShadowRepo};
use crate::shadow::MeterShadow;
use crate::status::{InteractionStatus, Transition};
use crate::token::{StsToken, TokenKind, TokenRequest};

/// What an operator asks of a meter.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandRequest {
    pub kind: InteractionType,
    /// SET_POWER_LIMIT: watts.
    pub power_limit_w: Option<i32>,
    /// TOP_UP: watt-hours.
    pub energy_wh: Option<i64>,
    /// DELIVER_PREEXISTING_TOKEN: the 20-digit token.
    pub token: Option<String>,
}

/// An interaction as operators see it. Token values are never shown.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct InteractionView {
    #[schema(value_type = i64)]
    pub id: InteractionId,
    pub organization_id: OrganizationId,
    pub grid_id: Option<GridId>,
    pub meter_id: MeterId,
    pub kind: InteractionType,
    pub status: InteractionStatus,
    pub origin: Origin,
    pub priority: i32,
    pub power_limit_w: Option<i32>,
    pub energy_wh: Option<i64>,
    /// Later identical requests absorbed by this one.
    pub coalesced_requests: i32,
    #[schema(value_type = Option<i64>)]
    pub superseded_by: Option<InteractionId>,
    /// Reads: not sent after this instant.
    pub expires_at: Option<DateTime<Utc>>,
    /// A step of this commissioning run.
    #[schema(value_type = Option<i64>)]
    pub commissioning_id: Option<crate::ids::CommissioningId>,
    /// A manual retry of this FAILED interaction.
    #[schema(value_type = Option<i64>)]
    pub retry_of: Option<InteractionId>,
    /// Holds, failures and decisions, newest first.
    pub history: Vec<HistoryEntry>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct InteractionFilter {
    pub meter_id: Option<MeterId>,
    pub grid_id: Option<GridId>,
    pub status: Option<InteractionStatus>,
    pub kind: Option<InteractionType>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    /// Interactions a directive batch execution created or joined.
    pub batch_execution_id: Option<crate::ids::BatchExecutionId>,
}

/// What generating an STS token needs from storage.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait TokenIssue: Send + Sync {
    /// The meter's STS decoder key, if one is on file.
    async fn decoder_key(&self, meter: MeterId) -> Result<Option<String>, DomainError>;
    /// Reserves the meter's next issue time ([`crate::next_sts_issue_time`]) and stores it
    /// before any token is generated, so issue times strictly increase per meter.
    async fn reserve_issue_time(
        &self,
        meter: MeterId,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, DomainError>;
}

/// The read model of interactions.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait InteractionQueries: Send + Sync {
    async fn list(
        &self,
        scope: TenantScope,
        filter: InteractionFilter,
        page: PageRequest,
    ) -> Result<Vec<InteractionView>, DomainError>;
    async fn get(
        &self,
        scope: TenantScope,
        id: InteractionId,
    ) -> Result<Option<InteractionView>, DomainError>;
}

fn requester(who: &Principal) -> crate::ports::Requester {
    crate::ports::Requester {
        account: who.account_id,
        api_key: who.api_key_id(),
    }
}

#[derive(Clone)]
pub struct CommandService {
    interactions: Arc<dyn InteractionRepo>,
    shadows: Arc<dyn ShadowRepo>,
    queries: Arc<dyn InteractionQueries>,
    meters: Arc<dyn MeterRepo>,
    grids: Arc<dyn GridStateRepo>,
    clock: Arc<dyn Clock>,
    policy: IntakePolicy,
    tokens: Option<(Arc<dyn TokenGenerator>, Arc<dyn TokenIssue>)>,
    records: Option<Arc<dyn CommandRecords>>,
}

/// How the system's own commands are admitted ([`CommandService::submit_with`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IntakeOptions {
    /// A follow-up takes the priority of the command it follows.
    pub following_up_on: Option<InteractionType>,
    /// What the gatekeeper is told about the request (commissioning step, operator retry).
    pub admission: AdmissionContext,
    /// Create the row DEFERRED with this history entry instead of asking the gatekeeper: a
    /// commissioning step waiting for the previous one. Released later with `Transition::Resume`.
    pub hold: Option<HistoryEntry>,
}

/// A token generated without a command ([`CommandService::issue_token`]).
#[derive(Debug, Clone, PartialEq)]
pub struct IssuedToken {
    pub meter_id: MeterId,
    pub token: StsToken,
    pub kind: TokenKind,
    pub issued_at: DateTime<Utc>,
}

/// What the command service records besides intake: tokens generated without a command, and
/// the links of manual retries.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait CommandRecords: Send + Sync {
    /// Audits a token generated without a command (never its value).
    async fn token_issued(
        &self,
        meter: MeterId,
        kind: TokenKind,
        issued_at: DateTime<Utc>,
        by: crate::ports::Requester,
    ) -> Result<(), DomainError>;
    /// The token a DELIVER_PREEXISTING_TOKEN interaction carries.
    async fn supplied_token(
        &self,
        interaction: InteractionId,
    ) -> Result<Option<String>, DomainError>;
    /// The retry already made of `interaction`, if any.
    async fn retried_by(
        &self,
        interaction: InteractionId,
    ) -> Result<Option<InteractionId>, DomainError>;
    /// Records that `retry` retries `of` (audited). `Conflict` when `of` was retried already.
    async fn link_retry(
        &self,
        retry: InteractionId,
        of: InteractionId,
        by: crate::ports::Requester,
    ) -> Result<(), DomainError>;
}

/// Intake re-plans when another request for the same meter committed first.
const INTAKE_ATTEMPTS: usize = 3;

impl CommandService {
    pub fn new(
        interactions: Arc<dyn InteractionRepo>,
        shadows: Arc<dyn ShadowRepo>,
        queries: Arc<dyn InteractionQueries>,
        meters: Arc<dyn MeterRepo>,
        grids: Arc<dyn GridStateRepo>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            interactions,
            shadows,
            queries,
            meters,
            grids,
            clock,
            policy: IntakePolicy::default(),
            tokens: None,
            records: None,
        }
    }

    /// Enables standalone tokens' audit and manual retries ([`CommandRecords`]).
    pub fn with_records(mut self, records: Arc<dyn CommandRecords>) -> Self {
        self.records = Some(records);
        self
    }

    fn records(&self) -> Result<&Arc<dyn CommandRecords>, DomainError> {
        self.records
            .as_ref()
            .ok_or_else(|| DomainError::Internal("command records are not wired".into()))
    }

    /// Whether STS tokens can be generated (a generator is configured).
    pub fn generates_tokens(&self) -> bool {
        self.tokens.is_some()
    }

    /// Enables token commands (TOP_UP, CLEAR_CREDIT, CLEAR_TAMPER, SET_POWER_LIMIT).
    pub fn with_tokens(
        mut self,
        generator: Arc<dyn TokenGenerator>,
        issue: Arc<dyn TokenIssue>,
    ) -> Self {
        self.tokens = Some((generator, issue));
        self
    }

    /// Generates the STS token a request needs. Runs once per request, before intake: a token is
    /// worth money, so it is never generated twice for one request.
    async fn generate_token(
        &self,
        meter: &grids::meters::Meter,
        request: &IntakeRequest,
    ) -> Result<Option<StsToken>, DomainError> {
        let Some(kind) = TokenKind::for_request(request) else {
            return Ok(None);
        };
        Ok(Some(self.mint(meter, kind, None).await?.0))
    }

    /// Reserves the meter's next issue time, then generates. `decoder_key` overrides the key on
    /// file (offline tokens for meters whose key comes with the request).
    async fn mint(
        &self,
        meter: &grids::meters::Meter,
        kind: TokenKind,
        decoder_key: Option<String>,
    ) -> Result<(StsToken, DateTime<Utc>), DomainError> {
        let (generator, issue) = self.tokens.as_ref().ok_or_else(|| {
            DomainError::Unavailable("no STS token generator is configured".into())
        })?;
        let decoder_key = match decoder_key {
            Some(key) => Some(key),
            None => issue.decoder_key(meter.id).await?,
        };
        let issued_at = issue.reserve_issue_time(meter.id, self.clock.now()).await?;
        let token = generator
            .generate(TokenRequest {
                meter_id: meter.id,
                external_reference: meter.external_reference.clone(),
                protocol: meter.communication_protocol,
                decoder_key,
                kind,
                issued_at,
            })
            .await?;
        Ok((token, issued_at))
    }

    /// Generates an STS token for the meter without sending it (the operator delivers it by
    /// hand, e.g. typed on the keypad). Issue times stay strictly increasing per meter; the
    /// generation is audited, never the token. The meter need not be installed.
    pub async fn issue_token(
        &self,
        who: &Principal,
        meter_id: MeterId,
        kind: TokenKind,
        decoder_key: Option<String>,
    ) -> Result<IssuedToken, DomainError> {
        let as_command = match kind {
            TokenKind::TopUp { .. } => InteractionType::TopUp,
            TokenKind::ClearCredit => InteractionType::ClearCredit,
            TokenKind::ClearTamper => InteractionType::ClearTamper,
            TokenKind::SetPowerLimit { .. } => InteractionType::SetPowerLimit,
        };
        who.require(Self::required_permission(as_command))?;
        let meter = self
            .meters
            .get(who.scope(), meter_id)
            .await?
            .ok_or(DomainError::NotFound("meter"))?;
        let records = self.records()?;
        let (token, issued_at) = self.mint(&meter, kind, decoder_key).await?;
        records
            .token_issued(meter.id, kind, issued_at, requester(who))
            .await?;
        Ok(IssuedToken {
            meter_id: meter.id,
            token,
            kind,
            issued_at,
        })
    }

    /// CLEAR_TAMPER tokens for meters that cannot be reached (typed in on site), one per
    /// `(serial, decoder key)` row, in order. A row that fails says why; the others go on.
    /// The decoder key given overrides the one on file; without one, the stored key is used.
    pub async fn offline_clear_tamper_tokens(
        &self,
        who: &Principal,
        rows: Vec<(String, Option<String>)>,
    ) -> Result<Vec<(String, Result<IssuedToken, DomainError>)>, DomainError> {
        who.require(Permission::MeterCommand)?;
        if !self.generates_tokens() {
            return Err(DomainError::Unavailable(
                "no STS token generator is configured".into(),
            ));
        }
        let mut out = Vec::with_capacity(rows.len());
        for (serial, key) in rows {
            let found = self
                .meters
                .list(
                    who.scope(),
                    grids::meters::MeterFilter {
                        search: Some(serial.clone()),
                        ..Default::default()
                    },
                    PageRequest::new(Some(50), None)?,
                )
                .await?
                .into_iter()
                .find(|m| m.external_reference == serial);
            let issued = match found {
                Some(meter) => {
                    self.issue_token(who, meter.id, TokenKind::ClearTamper, key)
                        .await
                }
                None => Err(DomainError::NotFound("meter")),
            };
            out.push((serial, issued));
        }
        Ok(out)
    }

    /// A new interaction with the type and arguments of a FAILED one (409 otherwise, or when it
    /// was retried already). Token commands get a freshly generated token, since the failed one
    /// may have been consumed or rejected; a pre-existing token is delivered again as supplied.
    pub async fn retry(
        &self,
        who: &Principal,
        id: InteractionId,
    ) -> Result<(InteractionView, bool), DomainError> {
        let failed = self.get(who, id).await?;
        who.require(Self::required_permission(failed.kind))?;
        if failed.status != InteractionStatus::Failed {
            return Err(DomainError::Conflict(format!(
                "only a FAILED interaction can be retried; this one is {}",
                failed.status.as_str()
            )));
        }
        let records = self.records()?;
        if let Some(retry) = records.retried_by(id).await? {
            return Err(DomainError::Conflict(format!(
                "interaction {id} was already retried as interaction {retry}"
            )));
        }
        let token = match failed.kind {
            InteractionType::DeliverPreexistingToken => Some(
                records
                    .supplied_token(id)
                    .await?
                    .ok_or_else(|| DomainError::Internal("the token to deliver is gone".into()))?,
            ),
            _ => None,
        };
        let request = CommandRequest {
            kind: failed.kind,
            power_limit_w: failed.power_limit_w,
            energy_wh: failed.energy_wh,
            token,
        };
        let (view, created) = self.create(who, failed.meter_id, request).await?;
        records.link_retry(view.id, id, requester(who)).await?;
        let view = self
            .queries
            .get(TenantScope::All, view.id)
            .await?
            .ok_or(DomainError::NotFound("interaction"))?;
        Ok((view, created))
    }

    fn required_permission(kind: InteractionType) -> Permission {
        match kind {
            // Credit is sold through orders (payments); an operator may only re-deliver tokens.
            InteractionType::TopUp => Permission::OrderManage,
            InteractionType::DeliverPreexistingToken => Permission::TokenRedeliver,
            _ => Permission::MeterCommand,
        }
    }

    /// Creates (or coalesces into) an interaction for the meter. Answers the interaction and
    /// whether it was created.
    pub async fn create(
        &self,
        who: &Principal,
        meter_id: MeterId,
        req: CommandRequest,
    ) -> Result<(InteractionView, bool), DomainError> {
        who.require(Self::required_permission(req.kind))?;
        let meter = self
            .meters
            .get(who.scope(), meter_id)
            .await?
            .ok_or(DomainError::NotFound("meter"))?;
        let mut request = IntakeRequest::new(meter.id, req.kind, Origin::User);
        request.power_limit_w = req.power_limit_w;
        request.energy_wh = req.energy_wh;
        request.token = req.token.clone();
        self.intake(
            who.scope(),
            &meter,
            request,
            IntakeOptions::default(),
            requester(who),
        )
        .await
    }

    /// Creates a command on the system's own behalf (reconciler, follow-ups, schedules): the same
    /// intake, gatekeeper and token rules as [`CommandService::create`], without a caller's
    /// permissions. `following_up_on` gives a follow-up the priority of the command it follows.
    pub async fn submit(
        &self,
        request: IntakeRequest,
        following_up_on: Option<InteractionType>,
    ) -> Result<(InteractionView, bool), DomainError> {
        self.submit_with(
            request,
            IntakeOptions {
                following_up_on,
                ..IntakeOptions::default()
            },
        )
        .await
    }

    /// [`CommandService::submit`] with the gatekeeper context and an optional hold.
    pub async fn submit_with(
        &self,
        request: IntakeRequest,
        options: IntakeOptions,
    ) -> Result<(InteractionView, bool), DomainError> {
        let meter = self
            .meters
            .get(TenantScope::All, request.meter_id)
            .await?
            .ok_or(DomainError::NotFound("meter"))?;
        self.intake(
            TenantScope::All,
            &meter,
            request,
            options,
            crate::ports::Requester::default(),
        )
        .await
    }

    async fn intake(
        &self,
        scope: TenantScope,
        meter: &grids::meters::Meter,
        request: IntakeRequest,
        options: IntakeOptions,
        requested_by: crate::ports::Requester,
    ) -> Result<(InteractionView, bool), DomainError> {
        let meter = meter.clone();
        let grid = meter
            .grid_id
            .ok_or_else(|| DomainError::Conflict("the meter is not installed on a grid".into()))?;
        request.validate()?;
        let token = match (request.kind, &request.token) {
            (InteractionType::DeliverPreexistingToken, Some(t)) => Some(StsToken::new(t)),
            _ if request.kind.needs_generated_token() => {
                self.generate_token(&meter, &request).await?
            }
            _ => None,
        };
        let priority = request
            .kind
            .priority(request.origin.priority_context(options.following_up_on));
        let mut last_conflict = None;
        for _ in 0..INTAKE_ATTEMPTS {
            let now = self.clock.now();
            let state = self.grids.state(scope, grid).await?;
            let pending = self.interactions.unfinished(meter.id).await?;
            let plan = self.policy.plan(&pending, &request, now)?;
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
                IntakeAction::Create { wait_for: None, .. } if options.hold.is_some() => (
                    InteractionStatus::Deferred,
                    options.hold.clone().map(|h| HistoryEntry { at: now, ..h }),
                ),
                IntakeAction::Create { wait_for: None, .. } => {
                    let facts = state.as_ref().map(GridFacts::of);
                    let admission = gatekeeper(
                        &MeterFacts::of(&meter),
                        facts.as_ref(),
                        request.kind,
                        options.admission,
                        now,
                    );
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
            let stored = self.shadows.get(meter.id).await?;
            let loaded_version = stored.as_ref().map_or(0, |s| s.version);
            let shadow = match request.intent(now, None) {
                Some(intent) if status != InteractionStatus::Aborted => {
                    let mut shadow = stored.unwrap_or_else(|| MeterShadow::new(meter.id));
                    shadow.apply_intent(intent)?;
                    Some(shadow)
                }
                _ => None,
            };
            let commit = IntakeCommit {
                request: request.clone(),
                plan,
                status,
                history,
                priority,
                token: token.clone(),
                shadow,
                shadow_loaded_version: loaded_version,
                requested_by,
            };
            match self.interactions.commit_intake(commit).await {
                Ok(receipt) => {
                    let view = self
                        .queries
                        .get(TenantScope::All, receipt.interaction)
                        .await?
                        .ok_or(DomainError::NotFound("interaction"))?;
                    return Ok((view, receipt.created));
                }
                Err(DomainError::Conflict(m)) => last_conflict = Some(m),
                Err(e) => return Err(e),
            }
        }
        Err(DomainError::Conflict(
            last_conflict.unwrap_or_else(|| "the meter is busy; try again".into()),
        ))
    }

    pub async fn list(
        &self,
        who: &Principal,
        filter: InteractionFilter,
        page: PageRequest,
    ) -> Result<Page<InteractionView>, DomainError> {
        who.require(Permission::MeterRead)?;
        if who.kind != kernel::AccountKind::Member {
            return Err(DomainError::Forbidden("interactions are for staff".into()));
        }
        let rows = self.queries.list(who.scope(), filter, page).await?;
        Ok(Page::from_rows(rows, page, |i| i.id.get()))
    }

    pub async fn get(
        &self,
        who: &Principal,
        id: InteractionId,
    ) -> Result<InteractionView, DomainError> {
        who.require(Permission::MeterRead)?;
        if who.kind != kernel::AccountKind::Member {
            return Err(DomainError::NotFound("interaction"));
        }
        self.queries
            .get(who.scope(), id)
            .await?
            .ok_or(DomainError::NotFound("interaction"))
    }

    /// Cancels an unfinished interaction (ABORTED). A finished one, or one that moved on while
    /// we looked, answers 409.
    pub async fn cancel(
        &self,
        who: &Principal,
        id: InteractionId,
    ) -> Result<InteractionView, DomainError> {
        who.require(Permission::MeterCommand)?;
        let current = self.get(who, id).await?;
        if current.status.is_terminal() {
            return Err(DomainError::Conflict(format!(
                "the interaction is already {:?}",
                current.status
            )));
        }
        let history = HistoryEntry {
            at: self.clock.now(),
            status: current.status,
            reason: format!("cancelled by a {}", who.role),
            code: Some("cancelled".into()),
            is_final: true,
        };
        match self
            .interactions
            .transition(id, current.status, Transition::Cancelled, Some(history))
            .await?
        {
            Some(_) => self.get(who, id).await,
            None => Err(DomainError::Conflict(
                "the interaction changed meanwhile; reload it".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::IntakeAction;
    use crate::ports::{IntakeReceipt, MockClock, MockInteractionRepo, MockShadowRepo};
    use chrono::TimeZone;
    use grids::meters::{Meter, MockMeterRepo, ObservedState};
    use grids::state::{GatewayStatus, GridState, MockGridStateRepo};
    use grids::vocab::{CommunicationProtocol, MeterPhase, MeterSystem, MeterType};
    use kernel::{AccountId, AccountKind, DcuId, MemberId, PrincipalSource, Role};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap()
    }

    fn who(role: Role) -> Principal {
        Principal {
            account_id: Some(AccountId(1)),
            kind: AccountKind::Member,
            organization_id: OrganizationId(1),
            role,
            in_platform_org: false,
            grid_id: None,
            source: PrincipalSource::Token {
                member: Some(MemberId(1)),
                agent: None,
                customer: None,
            },
        }
    }

    fn meter(grid: Option<i64>) -> Meter {
        Meter {
            id: MeterId(5),
            organization_id: OrganizationId(1),
            external_system: MeterSystem::Calin,
            external_reference: "47003333623".into(),
            lorawan_dev_eui: None,
            has_decoder_key: true,
            communication_protocol: CommunicationProtocol::CalinLorawan,
            meter_type: MeterType::Hps,
            meter_phase: MeterPhase::SinglePhase,
            version: None,
            nickname: None,
            is_cabin_meter: false,
            hps_mode_power_limit_w: 200,
            grid_id: grid.map(GridId),
            connection_id: None,
            customer_id: None,
            customer_name: None,
            pole_id: None,
            dcu_id: Some(DcuId(3)),
            assigned_at: None,
            commissioned_at: None,
            manual_mode: false,
            observed: ObservedState {
                last_seen_at: Some(now() - chrono::Duration::minutes(5)),
                ..Default::default()
            },
            created_at: now(),
            updated_at: now(),
        }
    }

    fn grid_state(energised: bool) -> GridState {
        GridState {
            grid_id: GridId(9),
            is_hps_on: energised,
            is_hps_on_updated_at: None,
            is_fs_on: false,
            is_fs_on_updated_at: None,
            should_fs_be_on: false,
            should_fs_be_on_updated_at: None,
            all_gateways_online: true,
            gateways: vec![GatewayStatus {
                id: DcuId(3),
                external_reference: "gw".into(),
                communication_protocol: CommunicationProtocol::CalinLorawan,
                is_online: true,
                last_seen_at: None,
            }],
        }
    }

    fn view(id: i64, status: InteractionStatus) -> InteractionView {
        InteractionView {
            id: InteractionId(id),
            organization_id: OrganizationId(1),
            grid_id: Some(GridId(9)),
            meter_id: MeterId(5),
            kind: InteractionType::TurnOff,
            status,
            origin: Origin::User,
            priority: 1,
            power_limit_w: None,
            energy_wh: None,
            coalesced_requests: 0,
            superseded_by: None,
            expires_at: None,
            commissioning_id: None,
            retry_of: None,
            history: vec![],
            created_at: now(),
            updated_at: now(),
        }
    }

    struct Setup {
        interactions: MockInteractionRepo,
        shadows: MockShadowRepo,
        queries: MockInteractionQueries,
        meters: MockMeterRepo,
        grids: MockGridStateRepo,
    }

    impl Setup {
        fn new(grid: Option<i64>, energised: bool) -> Self {
            let mut meters = MockMeterRepo::new();
            meters
                .expect_get()
                .returning(move |_, _| Ok(Some(meter(grid))));
            let mut grids = MockGridStateRepo::new();
            grids
                .expect_state()
                .returning(move |_, _| Ok(Some(grid_state(energised))));
            Setup {
                interactions: MockInteractionRepo::new(),
                shadows: MockShadowRepo::new(),
                queries: MockInteractionQueries::new(),
                meters,
                grids,
            }
        }

        fn service(self) -> CommandService {
            let mut clock = MockClock::new();
            clock.expect_now().return_const(now());
            CommandService::new(
                Arc::new(self.interactions),
                Arc::new(self.shadows),
                Arc::new(self.queries),
                Arc::new(self.meters),
                Arc::new(self.grids),
                Arc::new(clock),
            )
        }
    }

    fn turn_off() -> CommandRequest {
        CommandRequest {
            kind: InteractionType::TurnOff,
            power_limit_w: None,
            energy_wh: None,
            token: None,
        }
    }

    #[tokio::test]
    async fn a_command_is_queued_with_its_intent_on_the_shadow() {
        let mut s = Setup::new(Some(9), true);
        s.interactions.expect_unfinished().returning(|_| Ok(vec![]));
        s.shadows.expect_get().returning(|_| Ok(None));
        s.interactions
            .expect_commit_intake()
            .withf(|c| {
                c.status == InteractionStatus::Queued
                    && matches!(c.plan.action, IntakeAction::Create { wait_for: None, .. })
                    && c.shadow.as_ref().is_some_and(|sh| !sh.drift().is_empty())
                    && c.shadow_loaded_version == 0
            })
            .times(1)
            .returning(|_| {
                Ok(IntakeReceipt {
                    interaction: InteractionId(11),
                    created: true,
                })
            });
        s.queries
            .expect_get()
            .returning(|_, id| Ok(Some(view(id.get(), InteractionStatus::Queued))));
        let (v, created) = s
            .service()
            .create(&who(Role::Tech), MeterId(5), turn_off())
            .await
            .unwrap();
        assert!(created);
        assert_eq!(v.id, InteractionId(11));
    }

    #[tokio::test]
    async fn a_dark_grid_suspends_and_a_lost_race_replans() {
        let mut s = Setup::new(Some(9), false);
        s.interactions
            .expect_unfinished()
            .times(2)
            .returning(|_| Ok(vec![]));
        s.shadows.expect_get().returning(|_| Ok(None));
        let mut first = true;
        s.interactions
            .expect_commit_intake()
            .withf(|c| c.status == InteractionStatus::Suspended && c.history.is_some())
            .times(2)
            .returning(move |_| {
                if std::mem::take(&mut first) {
                    Err(DomainError::Conflict("shadow moved".into()))
                } else {
                    Ok(IntakeReceipt {
                        interaction: InteractionId(12),
                        created: true,
                    })
                }
            });
        s.queries
            .expect_get()
            .returning(|_, id| Ok(Some(view(id.get(), InteractionStatus::Suspended))));
        let (v, _) = s
            .service()
            .create(&who(Role::Manager), MeterId(5), turn_off())
            .await
            .unwrap();
        assert_eq!(v.status, InteractionStatus::Suspended);
    }

    #[tokio::test]
    async fn refusals_come_before_any_write() {
        let mut s = Setup::new(None, true);
        s.interactions.expect_commit_intake().never();
        let service = s.service();
        let err = service
            .create(&who(Role::Tech), MeterId(5), turn_off())
            .await
            .unwrap_err();
        assert!(
            matches!(err, DomainError::Conflict(_)),
            "not installed: {err:?}"
        );
        let err = service
            .create(&who(Role::Developer), MeterId(5), turn_off())
            .await
            .unwrap_err();
        assert!(matches!(err, DomainError::Forbidden(_)));
        let top_up = CommandRequest {
            kind: InteractionType::TopUp,
            power_limit_w: None,
            energy_wh: Some(5000),
            token: None,
        };
        let err = service
            .create(&who(Role::Tech), MeterId(5), top_up.clone())
            .await
            .unwrap_err();
        assert!(
            matches!(err, DomainError::Forbidden(_)),
            "credit is sold by finance, not by technicians"
        );
        let s = Setup::new(Some(9), true);
        let err = s
            .service()
            .create(&who(Role::Finance), MeterId(5), top_up)
            .await
            .unwrap_err();
        assert!(
            matches!(err, DomainError::Unavailable(_)),
            "no token generator: {err:?}"
        );
    }

    #[tokio::test]
    async fn cancelling_is_a_compare_and_set() {
        let mut s = Setup::new(Some(9), true);
        s.queries
            .expect_get()
            .returning(|_, id| Ok(Some(view(id.get(), InteractionStatus::Queued))));
        s.interactions
            .expect_transition()
            .withf(|_, from, event, h| {
                *from == InteractionStatus::Queued
                    && *event == Transition::Cancelled
                    && h.as_ref().is_some_and(|h| h.is_final)
            })
            .times(1)
            .returning(|_, _, _, _| Ok(None));
        let err = s
            .service()
            .cancel(&who(Role::Tech), InteractionId(4))
            .await
            .unwrap_err();
        assert!(
            matches!(err, DomainError::Conflict(_)),
            "moved on meanwhile"
        );
        let mut s = Setup::new(Some(9), true);
        s.queries
            .expect_get()
            .returning(|_, id| Ok(Some(view(id.get(), InteractionStatus::Successful))));
        s.interactions.expect_transition().never();
        let err = s
            .service()
            .cancel(&who(Role::Tech), InteractionId(4))
            .await
            .unwrap_err();
        assert!(matches!(err, DomainError::Conflict(_)), "finished already");
    }
}
