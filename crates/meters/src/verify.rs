//! Failure triage and read-after-fail verification (§6.3, §6.4 "resolution hook").
//!
//! A command whose answer was lost may well have executed. Writing it again blindly is what
//! stacked contradictory commands in the predecessor; instead the command goes to VERIFYING and
//! a read decides: the intended value → SUCCESSFUL, anything else → FAILED (and the reconciler
//! takes over), no answer → FAILED as unverifiable.

use chrono::{DateTime, Utc};
use grids::vocab::CommunicationProtocol;

use crate::kind::InteractionType;
use crate::retry::{Jitter, RetryDecision, RetryPolicy};
use crate::shadow::{AttributeValue, MeterShadow};
use crate::status::{InteractionStatus, Transition};

/// How a delivery attempt went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryFailure {
    /// It never reached the meter: the network server refused it or could not be reached.
    /// `retryable`: waiting may help (timeouts, 5xx); otherwise it will not (device not
    /// registered, unsupported frame).
    NotDelivered { retryable: bool },
    /// It may have reached the meter, but no answer came: the acknowledgement or the reply was
    /// lost, or the device stage timed out after the network server took the message.
    Unconfirmed,
    /// The meter answered and refused (NAK, token rejected or already used).
    Rejected,
}

/// What happens to the interaction after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureOutcome {
    /// Park it and send it again at `at`.
    Retry { at: DateTime<Utc>, retry: u32 },
    /// Move to VERIFYING and create this read (a follow-up at the command's priority).
    Verify { read: InteractionType },
    /// Fail it for good.
    Fail,
}

impl FailureOutcome {
    /// The event to apply to the interaction.
    pub fn transition(self, failure: DeliveryFailure) -> Transition {
        match (self, failure) {
            (FailureOutcome::Retry { .. }, _) => Transition::DeliveryFailed { retryable: true },
            (FailureOutcome::Verify { .. }, _) => Transition::DeliveryUnconfirmed,
            (FailureOutcome::Fail, DeliveryFailure::Rejected) => Transition::Rejected,
            (
                FailureOutcome::Fail,
                DeliveryFailure::NotDelivered { .. } | DeliveryFailure::Unconfirmed,
            ) => Transition::DeliveryFailed { retryable: false },
        }
    }
}

/// Triage of a failed attempt:
/// * the meter refused → FAIL (no verification needed: it answered);
/// * it never reached the meter → retry with backoff while retries remain and the error is
///   transient, else FAIL;
/// * the outcome is unknown → for a command that drives an attribute and has a read that shows
///   it, VERIFY; for everything else (reads, tokens, clock writes, relays on CALIN V2) resending
///   is harmless (a used STS token is refused by the meter, reads and writes are idempotent), so
///   retry with backoff.
pub fn on_delivery_failure(
    kind: InteractionType,
    protocol: CommunicationProtocol,
    failure: DeliveryFailure,
    retries_so_far: u32,
    policy: &RetryPolicy,
    now: DateTime<Utc>,
    jitter: &mut dyn Jitter,
) -> FailureOutcome {
    match failure {
        DeliveryFailure::Rejected => FailureOutcome::Fail,
        DeliveryFailure::NotDelivered { retryable } => {
            retry_or_fail(policy, retries_so_far, retryable, now, jitter)
        }
        DeliveryFailure::Unconfirmed => match kind.verification_read(protocol) {
            Some(read) => FailureOutcome::Verify { read },
            None => retry_or_fail(policy, retries_so_far, true, now, jitter),
        },
    }
}

fn retry_or_fail(
    policy: &RetryPolicy,
    retries_so_far: u32,
    retryable: bool,
    now: DateTime<Utc>,
    jitter: &mut dyn Jitter,
) -> FailureOutcome {
    match policy.decide(retries_so_far, retryable, now, jitter) {
        RetryDecision::RetryAt { at, retry } => FailureOutcome::Retry { at, retry },
        RetryDecision::GiveUp => FailureOutcome::Fail,
    }
}

/// Whether the shadow already settles a verification: the meter reported the intended value at
/// or after the command was sent. A differing report settles nothing: on LoRaWAN the uplink that
/// opens the receive window is sent *before* the downlink executes, so only a read requested
/// after the failure can show a mismatch.
pub fn settled_by_shadow(
    shadow: &MeterShadow,
    intended: &AttributeValue,
    sent_at: DateTime<Utc>,
) -> Option<Transition> {
    shadow
        .reported_since(intended.attribute(), sent_at)
        .filter(|r| &r.value == intended)
        .map(|_| Transition::VerificationMatched)
}

/// The verdict on a VERIFYING command once its verification read is terminal (`None` while the
/// read is unfinished): the intended value observed → matched; another value → mismatched; the
/// read failed, expired or was retired, or did not report the attribute → unavailable.
pub fn verdict(
    intended: &AttributeValue,
    read_status: InteractionStatus,
    observations: &[AttributeValue],
) -> Option<Transition> {
    if read_status.is_unfinished() {
        return None;
    }
    let observed = match read_status {
        InteractionStatus::Successful => observations
            .iter()
            .find(|o| o.attribute() == intended.attribute()),
        InteractionStatus::Queued
        | InteractionStatus::Suspended
        | InteractionStatus::Deferred
        | InteractionStatus::Processing
        | InteractionStatus::Verifying
        | InteractionStatus::Failed
        | InteractionStatus::Aborted
        | InteractionStatus::Superseded
        | InteractionStatus::Expired => None,
    };
    Some(match observed {
        None => Transition::VerificationUnavailable,
        Some(v) if v == intended => Transition::VerificationMatched,
        Some(_) => Transition::VerificationMismatched,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::FixedJitter;
    use crate::shadow::{RelayState, ReportedVia};
    use CommunicationProtocol as P;
    use InteractionType as T;
    use chrono::{Duration, TimeZone};
    use kernel::MeterId;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()
    }

    fn triage(kind: T, protocol: P, failure: DeliveryFailure, retries: u32) -> FailureOutcome {
        on_delivery_failure(
            kind,
            protocol,
            failure,
            retries,
            &RetryPolicy::default(),
            now(),
            &mut FixedJitter(0.0),
        )
    }

    const OFF: AttributeValue = AttributeValue::Relay(RelayState::Off);
    const ON: AttributeValue = AttributeValue::Relay(RelayState::On);

    #[test]
    fn a_lost_answer_on_a_control_command_is_verified_not_rewritten() {
        let outcome = triage(T::TurnOff, P::CalinLorawan, DeliveryFailure::Unconfirmed, 0);
        assert_eq!(
            outcome,
            FailureOutcome::Verify {
                read: T::ReadCredit
            }
        );
        assert_eq!(
            outcome.transition(DeliveryFailure::Unconfirmed),
            Transition::DeliveryUnconfirmed
        );
        assert_eq!(
            triage(
                T::SetPowerLimit,
                P::CalinV1,
                DeliveryFailure::Unconfirmed,
                3
            ),
            FailureOutcome::Verify {
                read: T::ReadPowerLimit
            }
        );
    }

    #[test]
    fn a_lost_answer_without_a_verifying_read_is_retried() {
        for (kind, protocol) in [
            (T::TurnOn, P::CalinV2),
            (T::ReadCredit, P::CalinLorawan),
            (T::TopUp, P::CalinLorawan),
            (T::SetDate, P::CalinV1),
        ] {
            assert_eq!(
                triage(kind, protocol, DeliveryFailure::Unconfirmed, 0),
                FailureOutcome::Retry {
                    at: now() + Duration::seconds(2),
                    retry: 1
                },
                "{kind}"
            );
        }
        assert_eq!(
            triage(
                T::ReadCredit,
                P::CalinLorawan,
                DeliveryFailure::Unconfirmed,
                11
            ),
            FailureOutcome::Fail
        );
    }

    #[test]
    fn transient_errors_retry_and_permanent_ones_fail() {
        let transient = DeliveryFailure::NotDelivered { retryable: true };
        assert!(matches!(
            triage(T::TurnOff, P::CalinLorawan, transient, 4),
            FailureOutcome::Retry { retry: 5, .. }
        ));
        assert_eq!(
            triage(T::TurnOff, P::CalinLorawan, transient, 11),
            FailureOutcome::Fail
        );
        let permanent = DeliveryFailure::NotDelivered { retryable: false };
        let outcome = triage(T::TurnOff, P::CalinLorawan, permanent, 0);
        assert_eq!(outcome, FailureOutcome::Fail);
        assert_eq!(
            outcome.transition(permanent),
            Transition::DeliveryFailed { retryable: false }
        );
    }

    #[test]
    fn a_refusal_fails_at_once() {
        for kind in [T::TopUp, T::TurnOn, T::ReadCredit] {
            let outcome = triage(kind, P::CalinLorawan, DeliveryFailure::Rejected, 0);
            assert_eq!(outcome, FailureOutcome::Fail, "{kind}");
            assert_eq!(
                outcome.transition(DeliveryFailure::Rejected),
                Transition::Rejected
            );
        }
    }

    #[test]
    fn verdicts() {
        assert_eq!(
            verdict(
                &OFF,
                InteractionStatus::Successful,
                &[AttributeValue::Credit(10), OFF]
            ),
            Some(Transition::VerificationMatched)
        );
        assert_eq!(
            verdict(&OFF, InteractionStatus::Successful, &[ON]),
            Some(Transition::VerificationMismatched)
        );
        assert_eq!(
            verdict(
                &OFF,
                InteractionStatus::Successful,
                &[AttributeValue::Credit(10)]
            ),
            Some(Transition::VerificationUnavailable),
            "a read without the relay proves nothing"
        );
        for s in [
            InteractionStatus::Failed,
            InteractionStatus::Expired,
            InteractionStatus::Aborted,
            InteractionStatus::Superseded,
        ] {
            assert_eq!(
                verdict(&OFF, s, &[OFF]),
                Some(Transition::VerificationUnavailable),
                "{s}"
            );
        }
        for s in [InteractionStatus::Queued, InteractionStatus::Processing] {
            assert_eq!(verdict(&OFF, s, &[]), None, "{s}");
        }
        assert_eq!(
            verdict(
                &AttributeValue::PowerLimit(300),
                InteractionStatus::Successful,
                &[AttributeValue::PowerLimit(300)]
            ),
            Some(Transition::VerificationMatched)
        );
    }

    #[test]
    fn a_fresh_matching_report_settles_verification_a_stale_or_differing_one_does_not() {
        let sent = now();
        let mut shadow = MeterShadow::new(MeterId(1));
        assert_eq!(settled_by_shadow(&shadow, &OFF, sent), None);
        shadow.apply_reading(OFF, ReportedVia::External, sent - Duration::minutes(5));
        assert_eq!(settled_by_shadow(&shadow, &OFF, sent), None, "stale");
        shadow.apply_reading(ON, ReportedVia::External, sent + Duration::seconds(30));
        assert_eq!(settled_by_shadow(&shadow, &OFF, sent), None, "differing");
        shadow.apply_reading(OFF, ReportedVia::External, sent + Duration::seconds(60));
        assert_eq!(
            settled_by_shadow(&shadow, &OFF, sent),
            Some(Transition::VerificationMatched)
        );
    }
}
