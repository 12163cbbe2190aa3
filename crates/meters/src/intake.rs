//! Intake (§6.4): before a new command is created, look at what is already unfinished for the
//! meter. Identical reads coalesce, contradicting intents retire the older ones (supersession),
//! value-carrying tokens always go through, and reads get a time to live.

use chrono::{DateTime, Duration, Utc};
use kernel::{DomainError, MeterId, Validator};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::{BatchExecutionId, CommissioningId, InteractionId};
use crate::kind::{Category, InteractionType, Origin};
use crate::shadow::{AttributeValue, Intent, RelayState};
use crate::status::{InteractionStatus, Transition};

/// A request for a new interaction, before anything is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct IntakeRequest {
    pub meter_id: MeterId,
    pub kind: InteractionType,
    pub origin: Origin,
    /// SET_POWER_LIMIT only: the limit in watts.
    pub power_limit_w: Option<i32>,
    /// TOP_UP only: the energy in watt-hours.
    pub energy_wh: Option<i64>,
    /// DELIVER_PREEXISTING_TOKEN only: the token to deliver.
    pub token: Option<String>,
    pub commissioning_id: Option<CommissioningId>,
    pub batch_execution_id: Option<BatchExecutionId>,
}

impl IntakeRequest {
    pub fn new(meter_id: MeterId, kind: InteractionType, origin: Origin) -> Self {
        Self {
            meter_id,
            kind,
            origin,
            power_limit_w: None,
            energy_wh: None,
            token: None,
            commissioning_id: None,
            batch_execution_id: None,
        }
    }

    /// The value this command drives its attribute to: relay ON/OFF, or the power limit.
    pub fn intended(&self) -> Option<AttributeValue> {
        intended_value(self.kind, self.power_limit_w)
    }

    /// The intent this request states for the meter's shadow, stamped `at` and pointing at
    /// `interaction`: `None` for commands that drive no attribute and for origins that only
    /// enforce or check intents (the reconciler, follow-ups).
    pub fn intent(&self, at: DateTime<Utc>, interaction: Option<InteractionId>) -> Option<Intent> {
        if !self.origin.states_intent() {
            return None;
        }
        Some(Intent {
            value: self.intended()?,
            by: self.origin,
            by_ref: self.batch_execution_id.map(BatchExecutionId::get),
            at,
            interaction,
        })
    }

    /// Every problem at once: arguments that the type needs or must not have.
    pub fn validate(&self) -> Result<(), DomainError> {
        use InteractionType as T;
        let mut v = Validator::new();
        v.check(
            !self.kind.is_unsolicited(),
            "kind",
            "is reported by the meter and cannot be requested",
        );
        match self.kind {
            T::SetPowerLimit => v.check(
                // 0 W removes the limit (a meter on full service).
                self.power_limit_w.is_some_and(|w| w >= 0),
                "power_limit_w",
                "SET_POWER_LIMIT needs a power limit of 0 W (no limit) or more",
            ),
            _ => v.check(
                self.power_limit_w.is_none(),
                "power_limit_w",
                "only SET_POWER_LIMIT takes a power limit",
            ),
        };
        match self.kind {
            T::TopUp => v.check(
                self.energy_wh.is_some_and(|wh| wh > 0),
                "energy_wh",
                "TOP_UP needs an energy above 0 Wh",
            ),
            _ => v.check(
                self.energy_wh.is_none(),
                "energy_wh",
                "only TOP_UP takes an energy",
            ),
        };
        match self.kind {
            T::DeliverPreexistingToken => v.check(
                self.token
                    .as_deref()
                    .is_some_and(|t| t.chars().any(|c| !c.is_whitespace())),
                "token",
                "DELIVER_PREEXISTING_TOKEN needs a token",
            ),
            _ => v.check(
                self.token.is_none(),
                "token",
                "only DELIVER_PREEXISTING_TOKEN takes a token",
            ),
        };
        v.finish()
    }
}

/// The value a command of `kind` drives its attribute to.
pub fn intended_value(kind: InteractionType, power_limit_w: Option<i32>) -> Option<AttributeValue> {
    match kind {
        InteractionType::TurnOn => Some(AttributeValue::Relay(RelayState::On)),
        InteractionType::TurnOff => Some(AttributeValue::Relay(RelayState::Off)),
        InteractionType::SetPowerLimit => power_limit_w.map(AttributeValue::PowerLimit),
        _ => None,
    }
}

/// What intake (and the reconciler) need to know about an unfinished interaction.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingInteraction {
    pub id: InteractionId,
    pub meter_id: MeterId,
    pub kind: InteractionType,
    pub status: InteractionStatus,
    /// For control commands: the value it drives its attribute to.
    pub intended: Option<AttributeValue>,
    pub commissioning_id: Option<CommissioningId>,
    /// Reads only: not to be sent after this instant.
    pub expires_at: Option<DateTime<Utc>>,
    /// PROCESSING but waiting out a retry backoff: nothing is at the network server, so it can
    /// still be retired (the store claims the parked job first).
    pub parked_for_retry: bool,
    pub created_at: DateTime<Utc>,
}

impl PendingInteraction {
    /// Its time to live has run out: at or after `expires_at`.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }

    /// Not sent, or parked between attempts: can still be retired without a zombie left behind.
    pub fn is_retirable(&self) -> bool {
        self.status.is_pending()
            || (self.status == InteractionStatus::Processing && self.parked_for_retry)
    }

    /// On its way to the meter right now: it may execute whatever we decide.
    pub fn is_on_the_wire(&self) -> bool {
        self.status == InteractionStatus::Processing && !self.parked_for_retry
    }

    fn order_key(&self) -> (DateTime<Utc>, InteractionId) {
        (self.created_at, self.id)
    }
}

/// Intake settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntakePolicy {
    /// How long a read may wait to be sent; past it, it EXPIRES.
    pub read_ttl: Duration,
}

impl Default for IntakePolicy {
    fn default() -> Self {
        Self {
            read_ttl: Duration::minutes(30),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum IntakeAction {
    /// Insert a new interaction. `wait_for`: a command on the same attribute is on the wire, so
    /// create it DEFERRED until that one resolves; otherwise run the gatekeeper.
    Create {
        expires_at: Option<DateTime<Utc>>,
        wait_for: Option<InteractionId>,
    },
    /// Attach the requester (its batch) to this existing interaction; create nothing.
    Coalesce { into: InteractionId },
}

/// What to do with a request: one action, plus the interactions it retires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IntakePlan {
    pub action: IntakeAction,
    /// Contradicting intents to move to SUPERSEDED (`superseded_by` the new row).
    pub supersede: Vec<InteractionId>,
    /// Reads found past their time to live, to move to EXPIRED.
    pub expire: Vec<InteractionId>,
}

impl IntakePlan {
    fn create(expires_at: Option<DateTime<Utc>>) -> Self {
        Self {
            action: IntakeAction::Create {
                expires_at,
                wait_for: None,
            },
            supersede: Vec::new(),
            expire: Vec::new(),
        }
    }

    pub fn creates(&self) -> bool {
        matches!(self.action, IntakeAction::Create { .. })
    }
}

impl IntakePolicy {
    /// Decides how `request` enters the pipeline given `existing`, the meter's unfinished
    /// interactions:
    /// * commissioning requests, and value-carrying tokens (TOP_UP, CLEAR_CREDIT, CLEAR_TAMPER,
    ///   DELIVER_PREEXISTING_TOKEN), are always created; commissioning rows are never coalesced
    ///   into or superseded by other rows;
    /// * a read coalesces into a pending read of the same type that has not expired, else it is
    ///   created with `expires_at = now + read_ttl`;
    /// * a control intent (relay, power limit) coalesces into an unfinished command with the same
    ///   value; contradicting ones that are not on the wire are superseded; one on the wire makes
    ///   the new command wait for it;
    /// * SET_DATE/SET_TIME supersede older unsent commands of the same type (the newest payload
    ///   wins).
    ///
    /// Pending reads past their time to live are listed for expiry on the way.
    pub fn plan(
        &self,
        existing: &[PendingInteraction],
        request: &IntakeRequest,
        now: DateTime<Utc>,
    ) -> Result<IntakePlan, DomainError> {
        request.validate()?;
        let expire: Vec<InteractionId> = existing
            .iter()
            .filter(|r| r.status.is_unfinished() && r.is_retirable() && r.is_expired(now))
            .map(|r| r.id)
            .collect();
        let live = || {
            existing.iter().filter(|r| {
                r.meter_id == request.meter_id
                    && r.status.is_unfinished()
                    && !expire.contains(&r.id)
                    && r.commissioning_id.is_none()
            })
        };

        let mut plan = if request.commissioning_id.is_some() || request.kind.carries_value() {
            IntakePlan::create(None)
        } else {
            match request.kind.category() {
                Category::Read => {
                    let into = live()
                        .filter(|r| r.kind == request.kind && r.status.is_pending())
                        .min_by_key(|r| r.order_key());
                    match into {
                        Some(r) => IntakePlan {
                            action: IntakeAction::Coalesce { into: r.id },
                            supersede: Vec::new(),
                            expire: Vec::new(),
                        },
                        None => IntakePlan::create(Some(now + self.read_ttl)),
                    }
                }
                Category::Control | Category::Token => {
                    // Tokens that carry a value were handled above: what is left drives an
                    // attribute (SET_POWER_LIMIT, TURN_ON, TURN_OFF).
                    let (Some(attribute), Some(value)) =
                        (request.kind.controls(), request.intended())
                    else {
                        return Err(DomainError::Internal(format!(
                            "{} has no attribute to drive",
                            request.kind
                        )));
                    };
                    let same_attribute: Vec<&PendingInteraction> = live()
                        .filter(|r| r.kind.controls() == Some(attribute) && r.intended.is_some())
                        .collect();
                    let contradicting =
                        |r: &&&PendingInteraction| r.intended.as_ref() != Some(&value);
                    let supersede = same_attribute
                        .iter()
                        .filter(contradicting)
                        .filter(|r| r.is_retirable() || r.status == InteractionStatus::Verifying)
                        .map(|r| r.id)
                        .collect();
                    let zombie = same_attribute
                        .iter()
                        .filter(contradicting)
                        .filter(|r| r.is_on_the_wire())
                        .max_by_key(|r| r.order_key());
                    let same = same_attribute
                        .iter()
                        .filter(|r| r.intended.as_ref() == Some(&value))
                        .max_by_key(|r| r.order_key());
                    let action = match (same, zombie) {
                        // A command with the same value that will run after any zombie.
                        (Some(s), z) if z.is_none_or(|z| s.order_key() > z.order_key()) => {
                            IntakeAction::Coalesce { into: s.id }
                        }
                        (_, z) => IntakeAction::Create {
                            expires_at: None,
                            wait_for: z.map(|z| z.id),
                        },
                    };
                    IntakePlan {
                        action,
                        supersede,
                        expire: Vec::new(),
                    }
                }
                Category::Write => IntakePlan {
                    action: IntakeAction::Create {
                        expires_at: None,
                        wait_for: None,
                    },
                    supersede: live()
                        .filter(|r| r.kind == request.kind && r.is_retirable())
                        .map(|r| r.id)
                        .collect(),
                    expire: Vec::new(),
                },
                Category::Unsolicited => {
                    return Err(DomainError::invalid(
                        "kind",
                        "is reported by the meter and cannot be requested",
                    ));
                }
            }
        };
        plan.expire = expire;
        Ok(plan)
    }
}

/// [`IntakePolicy::plan`] with the default 30-minute read TTL.
pub fn plan_intake(
    existing: &[PendingInteraction],
    request: &IntakeRequest,
    now: DateTime<Utc>,
) -> Result<IntakePlan, DomainError> {
    IntakePolicy::default().plan(existing, request, now)
}

/// What a delivery worker does with a QUEUED interaction it is about to take: a read past its
/// time to live EXPIRES instead of being claimed.
pub fn claim_or_expire(row: &PendingInteraction, now: DateTime<Utc>) -> Transition {
    if row.is_expired(now) {
        Transition::Expired
    } else {
        Transition::Claim
    }
}

/// Unsent reads (pending, or parked between attempts) whose time to live has run out.
pub fn overdue_reads(rows: &[PendingInteraction], now: DateTime<Utc>) -> Vec<InteractionId> {
    rows.iter()
        .filter(|r| r.status.is_unfinished() && r.is_retirable() && r.is_expired(now))
        .map(|r| r.id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use InteractionStatus as S;
    use InteractionType as T;
    use chrono::TimeZone;

    fn t(min: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap() + Duration::minutes(min)
    }

    const M: MeterId = MeterId(1);

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

    fn limit_row(id: i64, w: i32, status: S, created: i64) -> PendingInteraction {
        PendingInteraction {
            intended: Some(AttributeValue::PowerLimit(w)),
            ..row(id, T::SetPowerLimit, status, created)
        }
    }

    fn req(kind: T) -> IntakeRequest {
        IntakeRequest::new(M, kind, Origin::Batch)
    }

    fn ids(v: &[i64]) -> Vec<InteractionId> {
        v.iter().copied().map(InteractionId).collect()
    }

    #[test]
    fn nothing_pending_creates() {
        let plan = plan_intake(&[], &req(T::TurnOff), t(0)).unwrap();
        assert_eq!(
            plan,
            IntakePlan {
                action: IntakeAction::Create {
                    expires_at: None,
                    wait_for: None
                },
                supersede: vec![],
                expire: vec![]
            }
        );
    }

    #[test]
    fn a_read_gets_the_default_ttl_of_30_minutes() {
        let plan = plan_intake(&[], &req(T::ReadVoltage), t(0)).unwrap();
        assert_eq!(
            plan.action,
            IntakeAction::Create {
                expires_at: Some(t(30)),
                wait_for: None
            }
        );
        let policy = IntakePolicy {
            read_ttl: Duration::minutes(10),
        };
        let plan = policy.plan(&[], &req(T::ReadVoltage), t(0)).unwrap();
        assert_eq!(
            plan.action,
            IntakeAction::Create {
                expires_at: Some(t(10)),
                wait_for: None
            }
        );
    }

    #[test]
    fn a_pending_read_absorbs_an_identical_read() {
        for status in [S::Queued, S::Suspended, S::Deferred] {
            let existing = [row(5, T::ReadCredit, status, 0)];
            let plan = plan_intake(&existing, &req(T::ReadCredit), t(10)).unwrap();
            assert_eq!(
                plan.action,
                IntakeAction::Coalesce {
                    into: InteractionId(5)
                },
                "{status}"
            );
            assert!(plan.supersede.is_empty());
        }
    }

    #[test]
    fn reads_coalesce_only_with_the_same_type_unsent_and_unexpired() {
        // Another read type.
        let plan = plan_intake(
            &[row(5, T::ReadVoltage, S::Queued, 0)],
            &req(T::ReadCredit),
            t(1),
        )
        .unwrap();
        assert!(plan.creates());
        // Already sent: its value may predate the request.
        let plan = plan_intake(
            &[row(5, T::ReadCredit, S::Processing, 0)],
            &req(T::ReadCredit),
            t(1),
        )
        .unwrap();
        assert!(plan.creates());
        // Past its TTL: expired on the way, and a fresh read is created.
        let plan = plan_intake(
            &[row(5, T::ReadCredit, S::Suspended, 0)],
            &req(T::ReadCredit),
            t(30),
        )
        .unwrap();
        assert_eq!(
            plan.action,
            IntakeAction::Create {
                expires_at: Some(t(60)),
                wait_for: None
            }
        );
        assert_eq!(plan.expire, ids(&[5]));
        // Another meter's read is none of our business.
        let other = PendingInteraction {
            meter_id: MeterId(2),
            ..row(5, T::ReadCredit, S::Queued, 0)
        };
        assert!(
            plan_intake(&[other], &req(T::ReadCredit), t(1))
                .unwrap()
                .creates()
        );
    }

    #[test]
    fn reads_coalesce_into_the_oldest() {
        let existing = [
            row(7, T::ReadPower, S::Queued, 2),
            row(6, T::ReadPower, S::Queued, 1),
        ];
        let plan = plan_intake(&existing, &req(T::ReadPower), t(3)).unwrap();
        assert_eq!(
            plan.action,
            IntakeAction::Coalesce {
                into: InteractionId(6)
            }
        );
    }

    #[test]
    fn a_new_control_intent_supersedes_queued_contradicting_ones() {
        let existing = [row(1, T::TurnOff, S::Queued, 0)];
        let plan = plan_intake(&existing, &req(T::TurnOn), t(1)).unwrap();
        assert_eq!(
            plan.action,
            IntakeAction::Create {
                expires_at: None,
                wait_for: None
            }
        );
        assert_eq!(plan.supersede, ids(&[1]));
    }

    #[test]
    fn supersession_reaches_suspended_deferred_parked_and_verifying_rows() {
        let parked = PendingInteraction {
            parked_for_retry: true,
            ..row(4, T::TurnOff, S::Processing, 3)
        };
        let existing = [
            row(1, T::TurnOff, S::Suspended, 0),
            row(2, T::TurnOff, S::Deferred, 1),
            row(3, T::TurnOff, S::Verifying, 2),
            parked,
            // Terminal rows are left alone.
            row(5, T::TurnOff, S::Failed, 4),
        ];
        let plan = plan_intake(&existing, &req(T::TurnOn), t(10)).unwrap();
        assert!(plan.creates());
        assert_eq!(plan.supersede, ids(&[1, 2, 3, 4]));
    }

    #[test]
    fn an_identical_intent_coalesces_into_the_unfinished_command() {
        for status in [
            S::Queued,
            S::Suspended,
            S::Deferred,
            S::Processing,
            S::Verifying,
        ] {
            let plan =
                plan_intake(&[row(1, T::TurnOff, status, 0)], &req(T::TurnOff), t(1)).unwrap();
            assert_eq!(
                plan.action,
                IntakeAction::Coalesce {
                    into: InteractionId(1)
                },
                "{status}"
            );
            assert!(plan.supersede.is_empty());
        }
    }

    #[test]
    fn a_contradicting_command_on_the_wire_makes_the_new_one_wait() {
        let existing = [row(1, T::TurnOff, S::Processing, 0)];
        let plan = plan_intake(&existing, &req(T::TurnOn), t(1)).unwrap();
        assert_eq!(
            plan.action,
            IntakeAction::Create {
                expires_at: None,
                wait_for: Some(InteractionId(1))
            }
        );
        assert!(plan.supersede.is_empty(), "a zombie cannot be retired");
    }

    #[test]
    fn flip_flop_behind_a_zombie_keeps_one_waiting_command() {
        // OFF on the wire, ON waiting for it; a new OFF retires the waiting ON and joins the
        // OFF already on the wire.
        let existing = [
            row(1, T::TurnOff, S::Processing, 0),
            row(2, T::TurnOn, S::Deferred, 1),
        ];
        let plan = plan_intake(&existing, &req(T::TurnOff), t(2)).unwrap();
        assert_eq!(
            plan.action,
            IntakeAction::Coalesce {
                into: InteractionId(1)
            }
        );
        assert_eq!(plan.supersede, ids(&[2]));
        // A new ON joins the waiting ON.
        let plan = plan_intake(&existing, &req(T::TurnOn), t(2)).unwrap();
        assert_eq!(
            plan.action,
            IntakeAction::Coalesce {
                into: InteractionId(2)
            }
        );
        assert!(plan.supersede.is_empty());
    }

    #[test]
    fn never_coalesces_into_a_command_that_runs_before_a_contradicting_zombie() {
        // ON (verifying, older) and OFF (on the wire, newer): a new ON must run after the OFF.
        let existing = [
            row(1, T::TurnOn, S::Verifying, 0),
            row(2, T::TurnOff, S::Processing, 1),
        ];
        let plan = plan_intake(&existing, &req(T::TurnOn), t(2)).unwrap();
        assert_eq!(
            plan.action,
            IntakeAction::Create {
                expires_at: None,
                wait_for: Some(InteractionId(2))
            }
        );
    }

    #[test]
    fn power_limits_supersede_by_value() {
        let existing = [limit_row(1, 500, S::Queued, 0)];
        let mut r = req(T::SetPowerLimit);
        r.power_limit_w = Some(800);
        let plan = plan_intake(&existing, &r, t(1)).unwrap();
        assert!(plan.creates());
        assert_eq!(plan.supersede, ids(&[1]));
        r.power_limit_w = Some(500);
        let plan = plan_intake(&existing, &r, t(1)).unwrap();
        assert_eq!(
            plan.action,
            IntakeAction::Coalesce {
                into: InteractionId(1)
            }
        );
        // Relay intents leave power limits alone.
        let plan = plan_intake(&existing, &req(T::TurnOn), t(1)).unwrap();
        assert!(plan.creates() && plan.supersede.is_empty());
    }

    #[test]
    fn value_carrying_tokens_are_never_coalesced_or_superseded() {
        let mut top_up = req(T::TopUp);
        top_up.energy_wh = Some(2000);
        let existing = [
            row(1, T::TopUp, S::Queued, 0),
            row(2, T::ClearCredit, S::Queued, 0),
            row(3, T::ClearTamper, S::Queued, 0),
            row(4, T::DeliverPreexistingToken, S::Queued, 0),
        ];
        let plan = plan_intake(&existing, &top_up, t(1)).unwrap();
        assert!(plan.creates());
        assert!(plan.supersede.is_empty());
        for kind in [T::ClearCredit, T::ClearTamper] {
            let plan = plan_intake(&existing, &req(kind), t(1)).unwrap();
            assert!(plan.creates() && plan.supersede.is_empty(), "{kind}");
        }
        let mut deliver = req(T::DeliverPreexistingToken);
        deliver.token = Some("1234 5678".into());
        let plan = plan_intake(&existing, &deliver, t(1)).unwrap();
        assert!(plan.creates() && plan.supersede.is_empty());
        // And control intents never retire them.
        let plan = plan_intake(&existing, &req(T::TurnOff), t(1)).unwrap();
        assert!(plan.supersede.is_empty());
        let mut limit = req(T::SetPowerLimit);
        limit.power_limit_w = Some(100);
        assert!(
            plan_intake(&existing, &limit, t(1))
                .unwrap()
                .supersede
                .is_empty()
        );
    }

    #[test]
    fn commissioning_rows_are_excluded_in_both_directions() {
        let commissioning = PendingInteraction {
            commissioning_id: Some(CommissioningId(9)),
            ..row(1, T::TurnOff, S::Deferred, 0)
        };
        let plan =
            plan_intake(std::slice::from_ref(&commissioning), &req(T::TurnOn), t(1)).unwrap();
        assert!(plan.creates() && plan.supersede.is_empty());
        let plan =
            plan_intake(std::slice::from_ref(&commissioning), &req(T::TurnOff), t(1)).unwrap();
        assert!(plan.creates(), "no coalescing into a commissioning step");

        let mut step = req(T::ReadVoltage);
        step.commissioning_id = Some(CommissioningId(9));
        let existing = [
            row(2, T::ReadVoltage, S::Queued, 0),
            row(3, T::TurnOff, S::Queued, 0),
        ];
        let plan = plan_intake(&existing, &step, t(1)).unwrap();
        assert_eq!(
            plan.action,
            IntakeAction::Create {
                expires_at: None,
                wait_for: None
            },
            "commissioning steps wait their turn and do not expire"
        );
        let mut on = req(T::TurnOn);
        on.commissioning_id = Some(CommissioningId(9));
        assert!(
            plan_intake(&existing, &on, t(1))
                .unwrap()
                .supersede
                .is_empty()
        );
    }

    #[test]
    fn clock_writes_supersede_older_unsent_ones_of_the_same_type() {
        let existing = [
            row(1, T::SetTime, S::Suspended, 0),
            row(2, T::SetDate, S::Suspended, 0),
            row(3, T::SetTime, S::Processing, 0),
        ];
        let plan = plan_intake(&existing, &req(T::SetTime), t(1)).unwrap();
        assert!(plan.creates());
        assert_eq!(plan.supersede, ids(&[1]));
    }

    #[test]
    fn only_authoring_origins_state_intents() {
        let mut r = req(T::TurnOff);
        r.batch_execution_id = Some(BatchExecutionId(4));
        let intent = r.intent(t(0), Some(InteractionId(9))).unwrap();
        assert_eq!(intent.value, AttributeValue::Relay(RelayState::Off));
        assert_eq!(intent.by, Origin::Batch);
        assert_eq!(intent.by_ref, Some(4));
        assert_eq!(intent.at, t(0));
        assert_eq!(intent.interaction, Some(InteractionId(9)));
        for origin in [Origin::Reconciler, Origin::FollowUp] {
            let r = IntakeRequest::new(M, T::TurnOff, origin);
            assert_eq!(r.intent(t(0), None), None, "{origin:?}");
        }
        assert_eq!(req(T::ReadCredit).intent(t(0), None), None);
        let mut limit = IntakeRequest::new(M, T::SetPowerLimit, Origin::User);
        limit.power_limit_w = Some(300);
        assert_eq!(
            limit.intent(t(0), None).map(|i| i.value),
            Some(AttributeValue::PowerLimit(300))
        );
    }

    #[test]
    fn validation_rejects_missing_and_stray_arguments() {
        let mut r = req(T::SetPowerLimit);
        assert!(r.validate().is_err());
        r.power_limit_w = Some(-1);
        assert!(r.validate().is_err());
        r.power_limit_w = Some(0);
        r.validate().unwrap();
        r.power_limit_w = Some(200);
        r.validate().unwrap();

        let mut r = req(T::TurnOn);
        r.energy_wh = Some(5);
        r.token = Some("1".into());
        match r.validate().unwrap_err() {
            DomainError::Validation(errs) => {
                let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
                assert_eq!(fields, ["energy_wh", "token"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(req(T::TopUp).validate().is_err());
        let mut r = req(T::DeliverPreexistingToken);
        r.token = Some("   ".into());
        assert!(r.validate().is_err());
        for kind in [T::ReadReport, T::JoinNetwork] {
            assert!(plan_intake(&[], &req(kind), t(0)).is_err(), "{kind}");
        }
    }

    #[test]
    fn an_expired_read_is_never_claimed() {
        let r = row(1, T::ReadCredit, S::Queued, 0);
        assert_eq!(claim_or_expire(&r, t(29)), Transition::Claim);
        assert_eq!(claim_or_expire(&r, t(30)), Transition::Expired);
        assert_eq!(r.status.apply(claim_or_expire(&r, t(45))), Ok(S::Expired));
        // Commands without a TTL are always claimed.
        let c = row(2, T::TurnOff, S::Queued, 0);
        assert_eq!(claim_or_expire(&c, t(10_000)), Transition::Claim);
    }

    #[test]
    fn overdue_reads_are_found_among_unsent_ones() {
        let parked = PendingInteraction {
            parked_for_retry: true,
            ..row(3, T::ReadPower, S::Processing, 0)
        };
        let rows = [
            row(1, T::ReadCredit, S::Suspended, 0),
            row(2, T::ReadCredit, S::Queued, 20),
            parked,
            row(4, T::ReadVoltage, S::Processing, 0),
            row(5, T::ReadVoltage, S::Expired, 0),
        ];
        assert_eq!(overdue_reads(&rows, t(31)), ids(&[1, 3]));
        for id in overdue_reads(&rows, t(31)) {
            let r = rows.iter().find(|r| r.id == id).unwrap();
            assert_eq!(r.status.apply(Transition::Expired), Ok(S::Expired));
        }
    }
}
