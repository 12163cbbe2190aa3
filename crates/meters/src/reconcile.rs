//! The reconciliation loop's decisions (§6.4): compare desired with reported, and issue at most
//! one corrective command per drifted attribute, never while a command for it is unfinished,
//! never in cooldown, never past the attempt cap. Plus the clean slate after a suspension.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use kernel::MeterId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::gatekeeper::GridFacts;
use crate::ids::InteractionId;
use crate::intake::{IntakeRequest, PendingInteraction};
use crate::kind::{Attribute, Category, InteractionType, Origin};
use crate::shadow::{AttributeValue, Drift, MeterShadow};
use crate::status::InteractionStatus;

/// Per-grid rollout switch (`reconciliation_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReconciliationMode {
    /// Do nothing.
    #[default]
    Off,
    /// Work out and report what would be done; send nothing.
    Shadow,
    /// Send corrective commands.
    On,
}

impl ReconciliationMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ReconciliationMode::Off => "OFF",
            ReconciliationMode::Shadow => "SHADOW",
            ReconciliationMode::On => "ON",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "OFF" => Some(ReconciliationMode::Off),
            "SHADOW" => Some(ReconciliationMode::Shadow),
            "ON" => Some(ReconciliationMode::On),
            _ => None,
        }
    }
}

/// Cooldowns and caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcilePolicy {
    /// A fresh intent is left alone this long: its own command is probably on its way.
    pub intent_cooldown: Duration,
    /// After a corrective command for an attribute, wait this long before another.
    pub attribute_cooldown: Duration,
    /// Corrective commands per attribute before the loop stops and an issue is opened.
    pub max_attempts: u32,
}

impl Default for ReconcilePolicy {
    /// §6.4: 10 min, 60 min, 3 attempts.
    fn default() -> Self {
        Self {
            intent_cooldown: Duration::minutes(10),
            attribute_cooldown: Duration::minutes(60),
            max_attempts: 3,
        }
    }
}

/// A corrective command the loop wants.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PlannedCommand {
    pub meter_id: MeterId,
    pub attribute: Attribute,
    pub kind: InteractionType,
    /// SET_POWER_LIMIT only.
    pub power_limit_w: Option<i32>,
    pub desired: AttributeValue,
    pub reported: Option<AttributeValue>,
    /// Which corrective attempt this is (1 for the first).
    pub attempt: u32,
    /// False in SHADOW mode: audit it, send nothing.
    pub execute: bool,
}

impl PlannedCommand {
    /// The intake request that carries it out (it still goes through intake and the gatekeeper).
    pub fn to_request(&self) -> IntakeRequest {
        IntakeRequest {
            power_limit_w: self.power_limit_w,
            ..IntakeRequest::new(self.meter_id, self.kind, Origin::Reconciler)
        }
    }
}

/// Why a drifted attribute gets no command now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Hold {
    ModeOff,
    /// A command for the attribute is unfinished (pending, in flight or verifying).
    InFlight {
        interaction: InteractionId,
    },
    /// The intent is younger than the intent cooldown.
    FreshIntent {
        until: DateTime<Utc>,
    },
    /// A corrective command was issued recently.
    CoolingDown {
        until: DateTime<Utc>,
    },
    /// The cap is reached: open an issue instead.
    AttemptsExhausted {
        attempts: u32,
    },
    /// No command sets this value.
    NotCommandable,
}

/// The loop's judgement on one drifted attribute.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Assessment {
    pub drift: Drift,
    pub command: Option<PlannedCommand>,
    pub hold: Option<Hold>,
}

/// Every drifted attribute of the shadow with its verdict. `pending` is the meter's unfinished
/// interactions.
pub fn assess(
    shadow: &MeterShadow,
    pending: &[PendingInteraction],
    mode: ReconciliationMode,
    policy: &ReconcilePolicy,
    now: DateTime<Utc>,
) -> Vec<Assessment> {
    shadow
        .drift()
        .into_iter()
        .map(
            |drift| match judge(shadow, &drift, pending, mode, policy, now) {
                Ok(command) => Assessment {
                    drift,
                    command: Some(command),
                    hold: None,
                },
                Err(hold) => Assessment {
                    drift,
                    command: None,
                    hold: Some(hold),
                },
            },
        )
        .collect()
}

fn judge(
    shadow: &MeterShadow,
    drift: &Drift,
    pending: &[PendingInteraction],
    mode: ReconciliationMode,
    policy: &ReconcilePolicy,
    now: DateTime<Utc>,
) -> Result<PlannedCommand, Hold> {
    let execute = match mode {
        ReconciliationMode::Off => return Err(Hold::ModeOff),
        ReconciliationMode::Shadow => false,
        ReconciliationMode::On => true,
    };
    if let Some(busy) = pending.iter().find(|r| {
        r.meter_id == shadow.meter_id
            && r.status.is_unfinished()
            && r.kind.controls() == Some(drift.attribute)
    }) {
        return Err(Hold::InFlight {
            interaction: busy.id,
        });
    }
    if now - drift.desired_at <= policy.intent_cooldown {
        return Err(Hold::FreshIntent {
            until: drift.desired_at + policy.intent_cooldown,
        });
    }
    let meta = shadow
        .state(drift.attribute)
        .map(|s| s.reconcile)
        .unwrap_or_default();
    if let Some(last) = meta.last_reconciled_at
        && now - last <= policy.attribute_cooldown
    {
        return Err(Hold::CoolingDown {
            until: last + policy.attribute_cooldown,
        });
    }
    if meta.attempts >= policy.max_attempts {
        return Err(Hold::AttemptsExhausted {
            attempts: meta.attempts,
        });
    }
    let (kind, power_limit_w) = drift.desired.command().ok_or(Hold::NotCommandable)?;
    Ok(PlannedCommand {
        meter_id: shadow.meter_id,
        attribute: drift.attribute,
        kind,
        power_limit_w,
        desired: drift.desired.clone(),
        reported: drift.reported.clone(),
        attempt: meta.attempts + 1,
        execute,
    })
}

/// The corrective commands to issue (or, in SHADOW mode, to report): at most one per drifted
/// attribute, none while one is unfinished or cooling down, none in OFF mode.
pub fn reconcile(
    shadow: &MeterShadow,
    pending: &[PendingInteraction],
    mode: ReconciliationMode,
    policy: &ReconcilePolicy,
    now: DateTime<Utc>,
) -> Vec<PlannedCommand> {
    assess(shadow, pending, mode, policy, now)
        .into_iter()
        .filter_map(|a| a.command)
        .collect()
}

/// Why a grid is skipped by the loop this round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GridHold {
    ModeOff,
    NotEnergised,
    NoGatewayOnline,
    /// A batch ran or will run within the quiet window: the loop must not fight it.
    BatchNearby,
}

/// The per-grid gate (§6.2): reconciliation on, grid energised, a gateway online, and no batch
/// within `quiet` of now (either side).
pub fn grid_gate(
    mode: ReconciliationMode,
    grid: &GridFacts,
    batch_times: &[DateTime<Utc>],
    quiet: Duration,
    now: DateTime<Utc>,
) -> Result<(), GridHold> {
    if mode == ReconciliationMode::Off {
        return Err(GridHold::ModeOff);
    }
    if !grid.is_energised {
        return Err(GridHold::NotEnergised);
    }
    if !grid.gateways.iter().any(|g| g.is_online) {
        return Err(GridHold::NoGatewayOnline);
    }
    if batch_times.iter().any(|&at| (now - at).abs() <= quiet) {
        return Err(GridHold::BatchNearby);
    }
    Ok(())
}

/// What to do with a meter's SUSPENDED interactions when its grid or gateway comes back.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, ToSchema)]
pub struct RecoveryPlan {
    /// Survivors: run them through the gatekeeper again.
    pub readjudicate: Vec<InteractionId>,
    /// Stale intents: SUPERSEDED.
    pub supersede: Vec<InteractionId>,
    /// Reads past their time to live: EXPIRED.
    pub expire: Vec<InteractionId>,
}

/// The clean slate after a suspension (§6.4):
/// * per controlled attribute, only the newest suspended command survives, and only if it still
///   matches the shadow's desired value and the meter has not already been seen in that state
///   since it was requested; the rest are superseded;
/// * SET_DATE/SET_TIME: the newest of each type survives;
/// * reads past their time to live expire, the others survive;
/// * value-carrying tokens and commissioning steps are kept as they are.
///
/// `suspended` may span a whole grid; `shadows` holds the shadows known for those meters. Rows
/// that are not SUSPENDED are ignored.
pub fn recover_suspended(
    suspended: &[PendingInteraction],
    shadows: &[MeterShadow],
    now: DateTime<Utc>,
) -> RecoveryPlan {
    let mut plan = RecoveryPlan::default();
    let rows = suspended
        .iter()
        .filter(|r| r.status == InteractionStatus::Suspended);
    // The newest row per attribute (controls) or per type (clock writes); keyed by meter too so
    // a grid-wide list can be passed at once.
    let mut newest: BTreeMap<(MeterId, GroupKey), &PendingInteraction> = BTreeMap::new();
    for r in rows.clone() {
        if r.commissioning_id.is_some() || r.kind.carries_value() {
            continue;
        }
        let key = match (r.kind.category(), r.kind.controls()) {
            (_, Some(attribute)) => GroupKey::Attribute(attribute),
            (Category::Write, None) => GroupKey::Write(r.kind.as_str()),
            (
                Category::Read | Category::Control | Category::Token | Category::Unsolicited,
                None,
            ) => {
                continue;
            }
        };
        let slot = newest.entry((r.meter_id, key)).or_insert(r);
        if (r.created_at, r.id) > (slot.created_at, slot.id) {
            *slot = r;
        }
    }
    let newest: HashSet<InteractionId> = newest.values().map(|r| r.id).collect();
    for r in rows {
        if r.commissioning_id.is_some() || r.kind.carries_value() {
            plan.readjudicate.push(r.id);
            continue;
        }
        if r.kind.is_read() || r.kind.is_unsolicited() {
            if r.is_expired(now) {
                plan.expire.push(r.id);
            } else {
                plan.readjudicate.push(r.id);
            }
            continue;
        }
        let is_newest = newest.contains(&r.id);
        let still_wanted = match (r.kind.controls(), &r.intended) {
            (Some(attribute), Some(value)) => shadows
                .iter()
                .find(|s| s.meter_id == r.meter_id)
                .is_none_or(|s| {
                    let desired_matches = s.desired(attribute).is_none_or(|d| &d.value == value);
                    let already_there = s
                        .reported_since(attribute, r.created_at)
                        .is_some_and(|rep| &rep.value == value);
                    desired_matches && !already_there
                }),
            _ => true,
        };
        if is_newest && still_wanted {
            plan.readjudicate.push(r.id);
        } else {
            plan.supersede.push(r.id);
        }
    }
    plan
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum GroupKey {
    Attribute(Attribute),
    Write(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gatekeeper::GatewayFacts;
    use crate::ids::CommissioningId;
    use crate::intake::intended_value;
    use crate::shadow::{Intent, RelayState, ReportedVia};
    use InteractionStatus as S;
    use InteractionType as T;
    use chrono::TimeZone;
    use grids::vocab::CommunicationProtocol;
    use kernel::DcuId;

    fn t(min: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap() + Duration::minutes(min)
    }

    const M: MeterId = MeterId(1);
    const OFF: AttributeValue = AttributeValue::Relay(RelayState::Off);
    const ON: AttributeValue = AttributeValue::Relay(RelayState::On);

    fn row(id: i64, kind: T, status: S, created: i64) -> PendingInteraction {
        PendingInteraction {
            id: InteractionId(id),
            meter_id: M,
            kind,
            status,
            intended: intended_value(kind, None),
            commissioning_id: None,
            expires_at: kind.is_read().then(|| t(created) + Duration::minutes(30)),
            parked_for_retry: false,
            created_at: t(created),
        }
    }

    /// Wants OFF since t(0); the meter reports ON.
    fn drifted() -> MeterShadow {
        let mut s = MeterShadow::new(M);
        s.apply_intent(Intent {
            value: OFF,
            by: Origin::Batch,
            by_ref: None,
            at: t(0),
            interaction: None,
        })
        .unwrap();
        s.apply_reading(ON, ReportedVia::External, t(1));
        s
    }

    fn on_mode(
        shadow: &MeterShadow,
        pending: &[PendingInteraction],
        at: i64,
    ) -> Vec<PlannedCommand> {
        reconcile(
            shadow,
            pending,
            ReconciliationMode::On,
            &ReconcilePolicy::default(),
            t(at),
        )
    }

    #[test]
    fn plans_one_command_for_a_drifted_attribute() {
        let plans = on_mode(&drifted(), &[], 11);
        assert_eq!(
            plans,
            [PlannedCommand {
                meter_id: M,
                attribute: Attribute::Relay,
                kind: T::TurnOff,
                power_limit_w: None,
                desired: OFF,
                reported: Some(ON),
                attempt: 1,
                execute: true,
            }]
        );
        let req = plans[0].to_request();
        assert_eq!(req.kind, T::TurnOff);
        assert_eq!(req.origin, Origin::Reconciler);
        req.validate().unwrap();
    }

    #[test]
    fn one_command_per_attribute_for_each_drifted_attribute() {
        let mut s = drifted();
        s.apply_intent(Intent {
            value: AttributeValue::PowerLimit(400),
            by: Origin::User,
            by_ref: None,
            at: t(0),
            interaction: None,
        })
        .unwrap();
        let plans = on_mode(&s, &[], 30);
        assert_eq!(plans.len(), 2);
        assert_eq!(plans[0].kind, T::TurnOff);
        assert_eq!(plans[1].kind, T::SetPowerLimit);
        assert_eq!(plans[1].power_limit_w, Some(400));
        plans[1].to_request().validate().unwrap();
    }

    #[test]
    fn nothing_without_drift() {
        let mut s = drifted();
        s.apply_reading(OFF, ReportedVia::External, t(2));
        assert!(on_mode(&s, &[], 100).is_empty());
    }

    #[test]
    fn nothing_while_a_command_for_the_attribute_is_unfinished() {
        for status in [
            S::Queued,
            S::Suspended,
            S::Deferred,
            S::Processing,
            S::Verifying,
        ] {
            let pending = [row(9, T::TurnOn, status, 5)];
            let a = assess(
                &drifted(),
                &pending,
                ReconciliationMode::On,
                &ReconcilePolicy::default(),
                t(30),
            );
            assert_eq!(a.len(), 1);
            assert_eq!(a[0].command, None, "{status}");
            assert_eq!(
                a[0].hold,
                Some(Hold::InFlight {
                    interaction: InteractionId(9)
                })
            );
        }
        // Reads, tokens and finished commands do not block.
        let pending = [
            row(1, T::ReadCredit, S::Queued, 5),
            row(2, T::TopUp, S::Queued, 5),
            row(3, T::TurnOff, S::Failed, 5),
        ];
        assert_eq!(on_mode(&drifted(), &pending, 30).len(), 1);
    }

    #[test]
    fn a_fresh_intent_is_left_to_its_own_command() {
        let a = assess(
            &drifted(),
            &[],
            ReconciliationMode::On,
            &ReconcilePolicy::default(),
            t(10),
        );
        assert_eq!(a[0].hold, Some(Hold::FreshIntent { until: t(10) }));
        assert_eq!(on_mode(&drifted(), &[], 11).len(), 1);
    }

    #[test]
    fn cooldown_after_a_corrective_command_then_the_cap() {
        let mut s = drifted();
        s.record_reconcile(Attribute::Relay, InteractionId(50), t(20));
        s.interaction_finished(InteractionId(50));
        let a = assess(
            &s,
            &[],
            ReconciliationMode::On,
            &ReconcilePolicy::default(),
            t(80),
        );
        assert_eq!(a[0].hold, Some(Hold::CoolingDown { until: t(80) }));
        let plans = on_mode(&s, &[], 81);
        assert_eq!(plans.len(), 1);
        assert_eq!(plans[0].attempt, 2);

        s.record_reconcile(Attribute::Relay, InteractionId(51), t(81));
        s.record_reconcile(Attribute::Relay, InteractionId(52), t(142));
        let a = assess(
            &s,
            &[],
            ReconciliationMode::On,
            &ReconcilePolicy::default(),
            t(500),
        );
        assert_eq!(a[0].hold, Some(Hold::AttemptsExhausted { attempts: 3 }));
        // A higher cap lets it go on.
        let policy = ReconcilePolicy {
            max_attempts: 4,
            ..ReconcilePolicy::default()
        };
        assert_eq!(
            reconcile(&s, &[], ReconciliationMode::On, &policy, t(500)).len(),
            1
        );
    }

    #[test]
    fn shadow_mode_only_reports_and_off_mode_does_nothing() {
        let plans = reconcile(
            &drifted(),
            &[],
            ReconciliationMode::Shadow,
            &ReconcilePolicy::default(),
            t(30),
        );
        assert_eq!(plans.len(), 1);
        assert!(!plans[0].execute);
        let a = assess(
            &drifted(),
            &[],
            ReconciliationMode::Off,
            &ReconcilePolicy::default(),
            t(30),
        );
        assert_eq!(a[0].hold, Some(Hold::ModeOff));
        assert!(
            reconcile(
                &drifted(),
                &[],
                ReconciliationMode::Off,
                &ReconcilePolicy::default(),
                t(30)
            )
            .is_empty()
        );
    }

    fn grid(energised: bool, online: bool) -> GridFacts {
        GridFacts {
            is_energised: energised,
            gateways: vec![GatewayFacts {
                id: DcuId(1),
                protocol: CommunicationProtocol::CalinLorawan,
                is_online: online,
            }],
        }
    }

    #[test]
    fn grid_gate() {
        let quiet = Duration::hours(1);
        let on = ReconciliationMode::On;
        assert_eq!(
            super::grid_gate(on, &grid(true, true), &[], quiet, t(0)),
            Ok(())
        );
        assert_eq!(
            super::grid_gate(ReconciliationMode::Off, &grid(true, true), &[], quiet, t(0)),
            Err(GridHold::ModeOff)
        );
        assert_eq!(
            super::grid_gate(on, &grid(false, true), &[], quiet, t(0)),
            Err(GridHold::NotEnergised)
        );
        assert_eq!(
            super::grid_gate(on, &grid(true, false), &[], quiet, t(0)),
            Err(GridHold::NoGatewayOnline)
        );
        assert_eq!(
            super::grid_gate(on, &grid(true, true), &[t(45)], quiet, t(0)),
            Err(GridHold::BatchNearby)
        );
        assert_eq!(
            super::grid_gate(on, &grid(true, true), &[t(-60)], quiet, t(0)),
            Err(GridHold::BatchNearby)
        );
        assert_eq!(
            super::grid_gate(on, &grid(true, true), &[t(-61), t(61)], quiet, t(0)),
            Ok(())
        );
    }

    fn ids(v: &[i64]) -> Vec<InteractionId> {
        v.iter().copied().map(InteractionId).collect()
    }

    #[test]
    fn recovery_keeps_only_the_latest_intent_per_attribute() {
        let mut shadow = MeterShadow::new(M);
        shadow
            .apply_intent(Intent {
                value: ON,
                by: Origin::Batch,
                by_ref: None,
                at: t(3),
                interaction: None,
            })
            .unwrap();
        let limit = |id, w, created| PendingInteraction {
            intended: Some(AttributeValue::PowerLimit(w)),
            ..row(id, T::SetPowerLimit, S::Suspended, created)
        };
        let rows = [
            row(1, T::TurnOff, S::Suspended, 0),
            row(2, T::TurnOn, S::Suspended, 1),
            row(3, T::TurnOff, S::Suspended, 2),
            row(4, T::TurnOn, S::Suspended, 3),
            limit(5, 300, 0),
            limit(6, 500, 1),
        ];
        let plan = recover_suspended(&rows, std::slice::from_ref(&shadow), t(60));
        assert_eq!(plan.readjudicate, ids(&[4, 6]));
        assert_eq!(plan.supersede, ids(&[1, 2, 3, 5]));
        assert!(plan.expire.is_empty());
    }

    #[test]
    fn recovery_drops_intents_the_shadow_no_longer_wants_or_already_has() {
        let mut shadow = MeterShadow::new(M);
        shadow
            .apply_intent(Intent {
                value: ON,
                by: Origin::User,
                by_ref: None,
                at: t(5),
                interaction: None,
            })
            .unwrap();
        // The newest suspended row says OFF, the intent has moved on to ON.
        let plan = recover_suspended(
            &[row(1, T::TurnOff, S::Suspended, 0)],
            std::slice::from_ref(&shadow),
            t(9),
        );
        assert_eq!(plan.supersede, ids(&[1]));
        assert!(plan.readjudicate.is_empty());
        // ON is wanted, but the meter was seen ON after the command was requested.
        shadow.apply_reading(ON, ReportedVia::External, t(7));
        let plan = recover_suspended(
            &[row(2, T::TurnOn, S::Suspended, 6)],
            std::slice::from_ref(&shadow),
            t(9),
        );
        assert_eq!(plan.supersede, ids(&[2]));
        // Seen ON only before it was requested: still sent.
        let plan = recover_suspended(
            &[row(3, T::TurnOn, S::Suspended, 8)],
            std::slice::from_ref(&shadow),
            t(9),
        );
        assert_eq!(plan.readjudicate, ids(&[3]));
        // Without a shadow the newest intent stands.
        let plan = recover_suspended(&[row(1, T::TurnOff, S::Suspended, 0)], &[], t(9));
        assert_eq!(plan.readjudicate, ids(&[1]));
    }

    #[test]
    fn recovery_expires_old_reads_and_keeps_tokens_and_commissioning() {
        let step = PendingInteraction {
            commissioning_id: Some(CommissioningId(4)),
            ..row(5, T::TurnOff, S::Suspended, 0)
        };
        let rows = [
            row(1, T::ReadCredit, S::Suspended, 0),
            row(2, T::ReadVoltage, S::Suspended, 50),
            row(3, T::TopUp, S::Suspended, 0),
            row(4, T::TopUp, S::Suspended, 1),
            step,
            row(6, T::TurnOn, S::Suspended, 1),
            row(7, T::SetTime, S::Suspended, 0),
            row(8, T::SetTime, S::Suspended, 1),
            // Not suspended: not this function's business.
            row(9, T::TurnOff, S::Queued, 2),
        ];
        let plan = recover_suspended(&rows, &[], t(60));
        assert_eq!(plan.expire, ids(&[1]));
        assert_eq!(plan.readjudicate, ids(&[2, 3, 4, 5, 6, 8]));
        assert_eq!(plan.supersede, ids(&[7]));
    }

    #[test]
    fn recovery_works_across_meters_of_a_grid() {
        let other = |r: PendingInteraction| PendingInteraction {
            meter_id: MeterId(2),
            ..r
        };
        let rows = [
            row(1, T::TurnOff, S::Suspended, 0),
            other(row(2, T::TurnOff, S::Suspended, 0)),
            row(3, T::TurnOn, S::Suspended, 1),
        ];
        let plan = recover_suspended(&rows, &[], t(5));
        assert_eq!(plan.readjudicate, ids(&[2, 3]));
        assert_eq!(plan.supersede, ids(&[1]));
    }
}
