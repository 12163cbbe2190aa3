//! The pipeline's required behaviours, end to end over the pure domain: an in-memory table of
//! interactions driven only through the crate's public rules and status machine.

use std::collections::HashMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use grids::vocab::CommunicationProtocol;
use kernel::{DcuId, MeterId};
use meters::{
    Admission, AdmissionContext, Attribute, AttributeValue, DeliveryFailure, FailureOutcome,
    FixedJitter, GatewayFacts, GridFacts, IntakeAction, IntakeRequest, InteractionId,
    InteractionStatus, InteractionType, MeterFacts, MeterShadow, Origin, PendingInteraction,
    ReconcilePolicy, ReconciliationMode, RelayState, RetryPolicy, Transition, claim_or_expire,
    gatekeeper, on_delivery_failure, plan_intake, reconcile, recover_suspended, verdict,
};

fn t(min: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 18, 0, 0).unwrap() + Duration::minutes(min)
}

const OFF: AttributeValue = AttributeValue::Relay(RelayState::Off);
const ON: AttributeValue = AttributeValue::Relay(RelayState::On);

fn grid(energised: bool, gateway_online: bool) -> GridFacts {
    GridFacts {
        is_energised: energised,
        gateways: vec![GatewayFacts {
            id: DcuId(1),
            protocol: CommunicationProtocol::CalinLorawan,
            is_online: gateway_online,
        }],
    }
}

fn lorawan_meter(last_seen: DateTime<Utc>) -> MeterFacts {
    MeterFacts {
        protocol: CommunicationProtocol::CalinLorawan,
        firmware_version: None,
        last_seen_at: Some(last_seen),
        dcu_id: Some(DcuId(1)),
    }
}

/// A stand-in for the store: rows, shadows, and a log of what was claimed for sending.
#[derive(Default)]
struct Pipeline {
    rows: Vec<PendingInteraction>,
    shadows: HashMap<MeterId, MeterShadow>,
    claimed: Vec<(InteractionId, InteractionType)>,
    next_id: i64,
}

impl Pipeline {
    fn unfinished(&self, meter: MeterId) -> Vec<PendingInteraction> {
        self.rows
            .iter()
            .filter(|r| r.meter_id == meter && r.status.is_unfinished())
            .cloned()
            .collect()
    }

    fn row(&self, id: InteractionId) -> &PendingInteraction {
        self.rows.iter().find(|r| r.id == id).unwrap()
    }

    fn apply(&mut self, id: InteractionId, event: Transition) -> InteractionStatus {
        let row = self.rows.iter_mut().find(|r| r.id == id).unwrap();
        row.status = row
            .status
            .apply(event)
            .unwrap_or_else(|e| panic!("#{id}: {e}"));
        if row.status.is_terminal() {
            let meter = row.meter_id;
            if let Some(s) = self.shadows.get_mut(&meter) {
                s.interaction_finished(id);
            }
        }
        row.status
    }

    /// Intake → gatekeeper → insert, as a service would do it in one transaction.
    fn request(
        &mut self,
        request: IntakeRequest,
        meter: &MeterFacts,
        grid: &GridFacts,
        now: DateTime<Utc>,
    ) -> InteractionId {
        let plan = plan_intake(&self.unfinished(request.meter_id), &request, now).unwrap();
        for id in &plan.supersede {
            self.apply(*id, Transition::Superseded);
        }
        for id in &plan.expire {
            self.apply(*id, Transition::Expired);
        }
        let id = match plan.action {
            IntakeAction::Coalesce { into } => into,
            IntakeAction::Create {
                expires_at,
                wait_for,
            } => {
                let status = match wait_for {
                    Some(_) => InteractionStatus::Deferred,
                    None => InteractionStatus::initial(&gatekeeper(
                        meter,
                        Some(grid),
                        request.kind,
                        AdmissionContext::default(),
                        now,
                    )),
                };
                self.next_id += 1;
                let id = InteractionId(self.next_id);
                self.rows.push(PendingInteraction {
                    id,
                    meter_id: request.meter_id,
                    kind: request.kind,
                    status,
                    intended: request.intended(),
                    commissioning_id: request.commissioning_id,
                    expires_at,
                    parked_for_retry: false,
                    created_at: now,
                });
                id
            }
        };
        if let Some(intent) = request.intent(now, Some(id)) {
            self.shadows
                .entry(request.meter_id)
                .or_insert_with(|| MeterShadow::new(request.meter_id))
                .apply_intent(intent)
                .unwrap();
        }
        id
    }

    /// A delivery worker takes a QUEUED row.
    fn take(&mut self, id: InteractionId, now: DateTime<Utc>) -> InteractionStatus {
        let event = claim_or_expire(self.row(id), now);
        if event == Transition::Claim {
            let kind = self.row(id).kind;
            self.claimed.push((id, kind));
        }
        self.apply(id, event)
    }

    fn writes_claimed(&self, meter: MeterId) -> Vec<InteractionType> {
        self.claimed
            .iter()
            .filter(|(id, _)| self.row(*id).meter_id == meter)
            .map(|(_, k)| *k)
            .filter(|k| !k.is_read())
            .collect()
    }
}

fn batch(meter: MeterId, kind: InteractionType) -> IntakeRequest {
    IntakeRequest::new(meter, kind, Origin::Batch)
}

#[test]
fn outage_600_turn_offs_then_600_turn_ons_leave_one_command_per_meter() {
    for outage in [grid(false, true), grid(true, false)] {
        let mut p = Pipeline::default();
        let meters: Vec<MeterId> = (1..=600).map(MeterId).collect();
        let facts = lorawan_meter(t(-5));

        for &m in &meters {
            p.request(batch(m, InteractionType::TurnOff), &facts, &outage, t(0));
        }
        for &m in &meters {
            p.request(batch(m, InteractionType::TurnOn), &facts, &outage, t(60));
        }
        // The next day's schedule piles on again while the outage lasts.
        for &m in &meters {
            p.request(
                batch(m, InteractionType::TurnOff),
                &facts,
                &outage,
                t(24 * 60),
            );
            p.request(
                batch(m, InteractionType::TurnOn),
                &facts,
                &outage,
                t(25 * 60),
            );
            p.request(
                batch(m, InteractionType::TurnOn),
                &facts,
                &outage,
                t(25 * 60 + 1),
            );
        }

        for &m in &meters {
            let unfinished = p.unfinished(m);
            assert_eq!(unfinished.len(), 1, "{m}: {unfinished:?}");
            assert_eq!(unfinished[0].kind, InteractionType::TurnOn);
            assert_eq!(unfinished[0].status, InteractionStatus::Suspended);
        }
        let superseded = p
            .rows
            .iter()
            .filter(|r| r.status == InteractionStatus::Superseded)
            .count();
        assert_eq!(superseded, 3 * 600, "OFF, ON, OFF retired per meter");
        assert_eq!(p.rows.len(), 4 * 600, "the repeated ON coalesced");

        // The grid comes back: the clean slate keeps one command per meter, and it goes out.
        let suspended: Vec<_> = p
            .rows
            .iter()
            .filter(|r| r.status == InteractionStatus::Suspended)
            .cloned()
            .collect();
        let shadows: Vec<_> = p.shadows.values().cloned().collect();
        let recovery = recover_suspended(&suspended, &shadows, t(26 * 60));
        assert_eq!(recovery.readjudicate.len(), 600);
        assert!(recovery.supersede.is_empty() && recovery.expire.is_empty());
        let healthy = grid(true, true);
        for id in recovery.readjudicate {
            let admission = gatekeeper(
                &lorawan_meter(t(26 * 60 - 2)),
                Some(&healthy),
                p.row(id).kind,
                AdmissionContext {
                    after_grid_transition: true,
                    ..Default::default()
                },
                t(26 * 60),
            );
            assert_eq!(admission, Admission::Queue);
            p.apply(id, Transition::Resume);
        }
        for &m in &meters {
            let unfinished = p.unfinished(m);
            assert_eq!(unfinished.len(), 1);
            assert_eq!(unfinished[0].status, InteractionStatus::Queued);
            assert_eq!(unfinished[0].kind, InteractionType::TurnOn);
            // The reconciler adds nothing while that command is unfinished.
            let plans = reconcile(
                &p.shadows[&m],
                &unfinished,
                ReconciliationMode::On,
                &ReconcilePolicy::default(),
                t(27 * 60),
            );
            assert!(plans.is_empty(), "{m}: {plans:?}");
        }
    }
}

#[test]
fn a_read_past_its_ttl_expires_and_is_never_claimed() {
    let mut p = Pipeline::default();
    let m = MeterId(1);
    let facts = lorawan_meter(t(-5));

    // Queued while the grid is up, but the worker only gets to it after 30 minutes.
    let queued = p.request(
        batch(m, InteractionType::ReadCredit),
        &facts,
        &grid(true, true),
        t(0),
    );
    assert_eq!(p.row(queued).status, InteractionStatus::Queued);
    assert_eq!(p.row(queued).expires_at, Some(t(30)));
    assert_eq!(p.take(queued, t(31)), InteractionStatus::Expired);

    // Suspended by an outage that outlasts the TTL: expired at recovery.
    let held = p.request(
        batch(m, InteractionType::ReadVoltage),
        &facts,
        &grid(false, true),
        t(0),
    );
    assert_eq!(p.row(held).status, InteractionStatus::Suspended);
    let suspended = vec![p.row(held).clone()];
    let recovery = recover_suspended(&suspended, &[], t(45));
    assert_eq!(recovery.expire, [held]);
    assert_eq!(
        p.apply(held, Transition::Expired),
        InteractionStatus::Expired
    );

    assert!(p.claimed.is_empty(), "no expired read was ever claimed");
    // And an expired read cannot be claimed afterwards either.
    assert!(InteractionStatus::Expired.apply(Transition::Claim).is_err());

    // A read within its TTL goes out.
    let fresh = p.request(
        batch(m, InteractionType::ReadCredit),
        &facts,
        &grid(true, true),
        t(50),
    );
    assert_eq!(p.take(fresh, t(60)), InteractionStatus::Processing);
}

/// TURN_OFF sent, its acknowledgement lost; answers the original and verification read ids.
fn lost_ack(p: &mut Pipeline, m: MeterId) -> (InteractionId, InteractionId) {
    let facts = lorawan_meter(t(-5));
    let healthy = grid(true, true);
    let off = p.request(
        IntakeRequest::new(m, InteractionType::TurnOff, Origin::User),
        &facts,
        &healthy,
        t(0),
    );
    assert_eq!(p.take(off, t(0)), InteractionStatus::Processing);
    assert_eq!(
        p.apply(off, Transition::Delivered),
        InteractionStatus::Processing
    );

    let outcome = on_delivery_failure(
        InteractionType::TurnOff,
        CommunicationProtocol::CalinLorawan,
        DeliveryFailure::Unconfirmed,
        0,
        &RetryPolicy::default(),
        t(1),
        &mut FixedJitter(0.0),
    );
    let FailureOutcome::Verify { read } = outcome else {
        panic!("expected verification, got {outcome:?}")
    };
    assert_eq!(read, InteractionType::ReadCredit);
    assert_eq!(
        p.apply(off, outcome.transition(DeliveryFailure::Unconfirmed)),
        InteractionStatus::Verifying
    );
    let check = p.request(
        IntakeRequest::new(m, read, Origin::FollowUp),
        &facts,
        &healthy,
        t(1),
    );
    assert_ne!(check, off);
    assert_eq!(p.take(check, t(2)), InteractionStatus::Processing);
    (off, check)
}

/// The verification read answers with the relay in `relay`.
fn read_answers(
    p: &mut Pipeline,
    m: MeterId,
    off: InteractionId,
    check: InteractionId,
    relay: AttributeValue,
) -> Transition {
    let observations = [AttributeValue::Credit(3_500), relay];
    assert_eq!(
        p.apply(check, Transition::Acked),
        InteractionStatus::Successful
    );
    p.shadows
        .get_mut(&m)
        .unwrap()
        .apply_success(check, None, &observations, t(3));
    let intended = p.row(off).intended.clone().unwrap();
    verdict(&intended, InteractionStatus::Successful, &observations).unwrap()
}

#[test]
fn a_lost_ack_is_verified_by_a_read_and_succeeds_without_a_second_write() {
    let mut p = Pipeline::default();
    let m = MeterId(7);
    let (off, check) = lost_ack(&mut p, m);

    let event = read_answers(&mut p, m, off, check, OFF);
    assert_eq!(event, Transition::VerificationMatched);
    assert_eq!(p.apply(off, event), InteractionStatus::Successful);

    assert_eq!(
        p.writes_claimed(m),
        [InteractionType::TurnOff],
        "one write only"
    );
    let shadow = &p.shadows[&m];
    assert!(shadow.drift().is_empty());
    assert_eq!(shadow.desired(Attribute::Relay).unwrap().in_flight, None);
    assert!(
        reconcile(
            shadow,
            &p.unfinished(m),
            ReconciliationMode::On,
            &ReconcilePolicy::default(),
            t(120),
        )
        .is_empty()
    );
}

#[test]
fn a_verification_mismatch_fails_and_the_reconciler_plans_exactly_one_correction() {
    let mut p = Pipeline::default();
    let m = MeterId(8);
    let (off, check) = lost_ack(&mut p, m);

    let event = read_answers(&mut p, m, off, check, ON);
    assert_eq!(event, Transition::VerificationMismatched);
    assert_eq!(p.apply(off, event), InteractionStatus::Failed);
    assert_eq!(
        p.writes_claimed(m),
        [InteractionType::TurnOff],
        "no blind retry"
    );

    let policy = ReconcilePolicy::default();
    // Within the intent cooldown the loop waits.
    let plans = reconcile(
        &p.shadows[&m],
        &p.unfinished(m),
        ReconciliationMode::On,
        &policy,
        t(5),
    );
    assert!(plans.is_empty());

    let plans = reconcile(
        &p.shadows[&m],
        &p.unfinished(m),
        ReconciliationMode::On,
        &policy,
        t(15),
    );
    assert_eq!(plans.len(), 1, "{plans:?}");
    assert_eq!(plans[0].kind, InteractionType::TurnOff);
    assert_eq!(plans[0].reported, Some(ON));

    // Issued: the loop records it, and the next round plans nothing more.
    let fix = p.request(
        plans[0].to_request(),
        &lorawan_meter(t(14)),
        &grid(true, true),
        t(15),
    );
    p.shadows
        .get_mut(&m)
        .unwrap()
        .record_reconcile(Attribute::Relay, fix, t(15));
    let desired = p.shadows[&m].desired(Attribute::Relay).unwrap();
    assert_eq!(
        (desired.at, desired.by),
        (t(0), Origin::User),
        "the intent is the user's"
    );
    assert_eq!(desired.in_flight, Some(fix));
    for at in [t(16), t(30), t(90)] {
        let again = reconcile(
            &p.shadows[&m],
            &p.unfinished(m),
            ReconciliationMode::On,
            &policy,
            at,
        );
        assert!(again.is_empty(), "at {at}: {again:?}");
    }
    // It was a fresh command, not a resend of the failed one.
    assert_ne!(fix, off);
    assert_eq!(p.row(fix).status, InteractionStatus::Queued);
}
