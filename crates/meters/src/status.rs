//! The interaction status machine. Every status change goes through
//! [`InteractionStatus::apply`]; the store persists the result with a compare-and-set on the old
//! status, so two workers can never both move the same row.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `meter_interaction_status_enum`, with the three statuses the shadow model adds
/// (VERIFYING, SUPERSEDED, EXPIRED).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InteractionStatus {
    /// Admitted and waiting to be claimed by a delivery worker.
    Queued,
    /// Held in the database: the grid is down or its gateways are offline.
    Suspended,
    /// Waiting for a turn: a commissioning step, a meter that has not been heard from yet, or a
    /// command in flight on the same attribute.
    Deferred,
    /// Claimed by a worker: being delivered, or waiting out a retry backoff.
    Processing,
    /// The delivery outcome was lost; a read decides whether the command took effect.
    Verifying,
    Successful,
    /// Delivery failed, the meter refused, or verification showed it did not take effect.
    Failed,
    /// Stopped for good: the meter is unreachable or unsupported, uninstalled, or a
    /// commissioning cascade.
    Aborted,
    /// Retired before it was sent: a newer intent for the same attribute replaced it.
    Superseded,
    /// A read that was not sent within its time to live.
    Expired,
}

/// Where a status sits in progress counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatusBucket {
    Pending,
    InFlight,
    Succeeded,
    Failed,
    /// Superseded or expired: never attempted, counted apart from failures.
    Retired,
}

impl InteractionStatus {
    pub const ALL: [InteractionStatus; 10] = [
        InteractionStatus::Queued,
        InteractionStatus::Suspended,
        InteractionStatus::Deferred,
        InteractionStatus::Processing,
        InteractionStatus::Verifying,
        InteractionStatus::Successful,
        InteractionStatus::Failed,
        InteractionStatus::Aborted,
        InteractionStatus::Superseded,
        InteractionStatus::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        use InteractionStatus as S;
        match self {
            S::Queued => "QUEUED",
            S::Suspended => "SUSPENDED",
            S::Deferred => "DEFERRED",
            S::Processing => "PROCESSING",
            S::Verifying => "VERIFYING",
            S::Successful => "SUCCESSFUL",
            S::Failed => "FAILED",
            S::Aborted => "ABORTED",
            S::Superseded => "SUPERSEDED",
            S::Expired => "EXPIRED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    pub fn bucket(self) -> StatusBucket {
        use InteractionStatus as S;
        match self {
            S::Queued | S::Suspended | S::Deferred => StatusBucket::Pending,
            S::Processing | S::Verifying => StatusBucket::InFlight,
            S::Successful => StatusBucket::Succeeded,
            S::Failed | S::Aborted => StatusBucket::Failed,
            S::Superseded | S::Expired => StatusBucket::Retired,
        }
    }

    /// Not yet sent: QUEUED, SUSPENDED, DEFERRED.
    pub fn is_pending(self) -> bool {
        self.bucket() == StatusBucket::Pending
    }

    /// PROCESSING or VERIFYING.
    pub fn is_in_flight(self) -> bool {
        self.bucket() == StatusBucket::InFlight
    }

    /// Nothing moves a terminal interaction again. A manual retry of a FAILED interaction is a
    /// new interaction.
    pub fn is_terminal(self) -> bool {
        matches!(
            self.bucket(),
            StatusBucket::Succeeded | StatusBucket::Failed | StatusBucket::Retired
        )
    }

    /// Pending or in flight.
    pub fn is_unfinished(self) -> bool {
        !self.is_terminal()
    }

    /// The gatekeeper re-evaluates only these.
    pub fn is_adjudicable(self) -> bool {
        matches!(
            self,
            InteractionStatus::Queued | InteractionStatus::Suspended
        )
    }

    /// The status a new interaction starts in, from the gatekeeper's answer.
    pub fn initial(admission: &crate::gatekeeper::Admission) -> Self {
        use crate::gatekeeper::Admission as A;
        match admission {
            A::Queue => InteractionStatus::Queued,
            A::Suspend(_) => InteractionStatus::Suspended,
            A::Defer { .. } => InteractionStatus::Deferred,
            A::Abort(_) => InteractionStatus::Aborted,
        }
    }

    /// The only way a status changes. Terminal statuses reject every event.
    pub fn apply(self, event: Transition) -> Result<InteractionStatus, IllegalTransition> {
        use InteractionStatus as S;
        use Transition as T;
        let next = match self {
            S::Queued => match event {
                T::Claim => Some(S::Processing),
                T::Suspend => Some(S::Suspended),
                T::Defer => Some(S::Deferred),
                T::Superseded => Some(S::Superseded),
                T::Cancelled => Some(S::Aborted),
                T::Expired => Some(S::Expired),
                T::Resume
                | T::Delivered
                | T::Acked
                | T::Rejected
                | T::DeliveryFailed { retryable: true }
                | T::DeliveryFailed { retryable: false }
                | T::DeliveryUnconfirmed
                | T::VerificationMatched
                | T::VerificationMismatched
                | T::VerificationUnavailable => None,
            },
            S::Suspended => match event {
                T::Suspend => Some(S::Suspended),
                T::Resume => Some(S::Queued),
                T::Defer => Some(S::Deferred),
                T::Superseded => Some(S::Superseded),
                T::Cancelled => Some(S::Aborted),
                T::Expired => Some(S::Expired),
                T::Claim
                | T::Delivered
                | T::Acked
                | T::Rejected
                | T::DeliveryFailed { retryable: true }
                | T::DeliveryFailed { retryable: false }
                | T::DeliveryUnconfirmed
                | T::VerificationMatched
                | T::VerificationMismatched
                | T::VerificationUnavailable => None,
            },
            S::Deferred => match event {
                T::Resume => Some(S::Queued),
                T::Suspend => Some(S::Suspended),
                T::Defer => Some(S::Deferred),
                T::Superseded => Some(S::Superseded),
                T::Cancelled => Some(S::Aborted),
                T::Expired => Some(S::Expired),
                T::Claim
                | T::Delivered
                | T::Acked
                | T::Rejected
                | T::DeliveryFailed { retryable: true }
                | T::DeliveryFailed { retryable: false }
                | T::DeliveryUnconfirmed
                | T::VerificationMatched
                | T::VerificationMismatched
                | T::VerificationUnavailable => None,
            },
            S::Processing => match event {
                T::Delivered => Some(S::Processing),
                T::Acked => Some(S::Successful),
                T::Rejected => Some(S::Failed),
                T::DeliveryFailed { retryable: true } => Some(S::Processing),
                T::DeliveryFailed { retryable: false } => Some(S::Failed),
                T::DeliveryUnconfirmed => Some(S::Verifying),
                // Only while parked for a retry: the store claims the parked job first.
                T::Superseded => Some(S::Superseded),
                T::Expired => Some(S::Expired),
                T::Cancelled => Some(S::Aborted),
                T::Claim
                | T::Suspend
                | T::Resume
                | T::Defer
                | T::VerificationMatched
                | T::VerificationMismatched
                | T::VerificationUnavailable => None,
            },
            S::Verifying => match event {
                T::VerificationMatched => Some(S::Successful),
                T::VerificationMismatched => Some(S::Failed),
                T::VerificationUnavailable => Some(S::Failed),
                // The lost answer turned up after all: it settles the question.
                T::Acked => Some(S::Successful),
                T::Rejected => Some(S::Failed),
                T::Superseded => Some(S::Superseded),
                T::Cancelled => Some(S::Aborted),
                T::Claim
                | T::Delivered
                | T::DeliveryFailed { retryable: true }
                | T::DeliveryFailed { retryable: false }
                | T::DeliveryUnconfirmed
                | T::Expired
                | T::Suspend
                | T::Resume
                | T::Defer => None,
            },
            S::Successful | S::Failed | S::Aborted | S::Superseded | S::Expired => None,
        };
        next.ok_or(IllegalTransition { from: self, event })
    }
}

impl std::fmt::Display for InteractionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that happened to an interaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Transition {
    /// A delivery worker took a QUEUED interaction.
    Claim,
    /// The network server accepted the message (progress; the status stays PROCESSING).
    Delivered,
    /// The meter confirmed execution.
    Acked,
    /// The meter answered and refused (NAK, token rejected): an execution failure.
    Rejected,
    /// Delivery failed before reaching the meter. Retryable: parked for a backoff (still
    /// PROCESSING); otherwise final.
    DeliveryFailed { retryable: bool },
    /// The message may have reached the meter but its answer was lost (timed out after the
    /// network server took it): verify with a read instead of writing again.
    DeliveryUnconfirmed,
    /// The verification read shows the intended value.
    VerificationMatched,
    /// The verification read shows another value.
    VerificationMismatched,
    /// The verification read failed or expired: the outcome cannot be known.
    VerificationUnavailable,
    /// A newer intent for the same attribute replaced this one.
    Superseded,
    /// Stopped by an operator, an uninstall, a commissioning cascade or the gatekeeper.
    Cancelled,
    /// A read's time to live ran out before it was sent.
    Expired,
    /// The gatekeeper holds it: grid or gateways down.
    Suspend,
    /// Released to the queue.
    Resume,
    /// Waits for its turn.
    Defer,
}

impl Transition {
    /// Every event, each retry flavour included (used by the tests and handy for property tests
    /// downstream).
    pub const ALL: [Transition; 16] = [
        Transition::Claim,
        Transition::Delivered,
        Transition::Acked,
        Transition::Rejected,
        Transition::DeliveryFailed { retryable: true },
        Transition::DeliveryFailed { retryable: false },
        Transition::DeliveryUnconfirmed,
        Transition::VerificationMatched,
        Transition::VerificationMismatched,
        Transition::VerificationUnavailable,
        Transition::Superseded,
        Transition::Cancelled,
        Transition::Expired,
        Transition::Suspend,
        Transition::Resume,
        Transition::Defer,
    ];
}

/// An event that the current status does not accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an interaction in status {from} cannot take event {event:?}")]
pub struct IllegalTransition {
    pub from: InteractionStatus,
    pub event: Transition,
}

impl From<IllegalTransition> for kernel::DomainError {
    fn from(e: IllegalTransition) -> Self {
        kernel::DomainError::Conflict(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use InteractionStatus as S;
    use Transition as T;
    use proptest::prelude::*;

    /// Every legal (from, event) → to. Anything not listed here must be rejected.
    const LEGAL: &[(S, T, S)] = &[
        (S::Queued, T::Claim, S::Processing),
        (S::Queued, T::Suspend, S::Suspended),
        (S::Queued, T::Defer, S::Deferred),
        (S::Queued, T::Superseded, S::Superseded),
        (S::Queued, T::Cancelled, S::Aborted),
        (S::Queued, T::Expired, S::Expired),
        (S::Suspended, T::Suspend, S::Suspended),
        (S::Suspended, T::Resume, S::Queued),
        (S::Suspended, T::Defer, S::Deferred),
        (S::Suspended, T::Superseded, S::Superseded),
        (S::Suspended, T::Cancelled, S::Aborted),
        (S::Suspended, T::Expired, S::Expired),
        (S::Deferred, T::Resume, S::Queued),
        (S::Deferred, T::Suspend, S::Suspended),
        (S::Deferred, T::Defer, S::Deferred),
        (S::Deferred, T::Superseded, S::Superseded),
        (S::Deferred, T::Cancelled, S::Aborted),
        (S::Deferred, T::Expired, S::Expired),
        (S::Processing, T::Delivered, S::Processing),
        (S::Processing, T::Acked, S::Successful),
        (S::Processing, T::Rejected, S::Failed),
        (
            S::Processing,
            T::DeliveryFailed { retryable: true },
            S::Processing,
        ),
        (
            S::Processing,
            T::DeliveryFailed { retryable: false },
            S::Failed,
        ),
        (S::Processing, T::DeliveryUnconfirmed, S::Verifying),
        (S::Processing, T::Superseded, S::Superseded),
        (S::Processing, T::Expired, S::Expired),
        (S::Processing, T::Cancelled, S::Aborted),
        (S::Verifying, T::VerificationMatched, S::Successful),
        (S::Verifying, T::VerificationMismatched, S::Failed),
        (S::Verifying, T::VerificationUnavailable, S::Failed),
        (S::Verifying, T::Acked, S::Successful),
        (S::Verifying, T::Rejected, S::Failed),
        (S::Verifying, T::Superseded, S::Superseded),
        (S::Verifying, T::Cancelled, S::Aborted),
    ];

    #[test]
    fn every_legal_transition() {
        for &(from, event, to) in LEGAL {
            assert_eq!(from.apply(event), Ok(to), "{from} + {event:?}");
        }
    }

    #[test]
    fn everything_else_is_illegal() {
        let mut illegal = 0;
        for from in S::ALL {
            for event in T::ALL {
                let legal = LEGAL.iter().any(|&(f, e, _)| f == from && e == event);
                let result = from.apply(event);
                if legal {
                    assert!(result.is_ok(), "{from} + {event:?} should be legal");
                } else {
                    assert_eq!(
                        result,
                        Err(IllegalTransition { from, event }),
                        "{from} + {event:?} should be illegal"
                    );
                    illegal += 1;
                }
            }
        }
        assert_eq!(illegal, S::ALL.len() * T::ALL.len() - LEGAL.len());
    }

    #[test]
    fn representative_illegal_transitions() {
        let table = [
            (S::Queued, T::Acked),                              // not claimed yet
            (S::Queued, T::Resume),                             // already queued
            (S::Suspended, T::Claim),                           // held, workers must not take it
            (S::Deferred, T::Claim),                            // not its turn
            (S::Processing, T::Claim),                          // claimed twice
            (S::Processing, T::Suspend),                        // in flight, cannot be held back
            (S::Processing, T::VerificationMatched),            // nothing being verified
            (S::Verifying, T::Expired),                         // only unsent reads expire
            (S::Verifying, T::DeliveryUnconfirmed),             // already verifying
            (S::Successful, T::Superseded),                     // terminal
            (S::Failed, T::Resume),                             // a retry is a new interaction
            (S::Aborted, T::Resume),                            // terminal
            (S::Superseded, T::Claim),                          // retired
            (S::Expired, T::Claim),                             // retired reads are never claimed
            (S::Failed, T::DeliveryFailed { retryable: true }), // terminal
        ];
        for (from, event) in table {
            let err = from.apply(event).unwrap_err();
            assert_eq!(err.from, from);
            assert_eq!(err.event, event);
        }
    }

    #[test]
    fn terminal_statuses_reject_everything() {
        for from in S::ALL.into_iter().filter(|s| s.is_terminal()) {
            for event in T::ALL {
                assert!(from.apply(event).is_err(), "{from} + {event:?}");
            }
        }
        let terminal: Vec<_> = S::ALL.into_iter().filter(|s| s.is_terminal()).collect();
        assert_eq!(
            terminal,
            [
                S::Successful,
                S::Failed,
                S::Aborted,
                S::Superseded,
                S::Expired
            ]
        );
    }

    #[test]
    fn buckets() {
        let table = [
            (S::Queued, StatusBucket::Pending),
            (S::Suspended, StatusBucket::Pending),
            (S::Deferred, StatusBucket::Pending),
            (S::Processing, StatusBucket::InFlight),
            (S::Verifying, StatusBucket::InFlight),
            (S::Successful, StatusBucket::Succeeded),
            (S::Failed, StatusBucket::Failed),
            (S::Aborted, StatusBucket::Failed),
            (S::Superseded, StatusBucket::Retired),
            (S::Expired, StatusBucket::Retired),
        ];
        for (s, b) in table {
            assert_eq!(s.bucket(), b, "{s}");
            assert_eq!(s.is_unfinished(), !s.is_terminal());
        }
        assert!(S::Queued.is_adjudicable() && S::Suspended.is_adjudicable());
        assert!(!S::Deferred.is_adjudicable());
    }

    #[test]
    fn names_round_trip() {
        for s in S::ALL {
            assert_eq!(S::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        assert_eq!(
            serde_json::to_value(T::DeliveryFailed { retryable: true }).unwrap(),
            serde_json::json!({"event": "delivery_failed", "retryable": true})
        );
    }

    #[test]
    fn illegal_transition_is_a_conflict() {
        let err: kernel::DomainError = S::Successful.apply(T::Claim).unwrap_err().into();
        assert!(matches!(err, kernel::DomainError::Conflict(m) if m.contains("SUCCESSFUL")));
    }

    #[test]
    fn every_status_is_reachable_from_queued() {
        let mut seen = vec![S::Queued];
        let mut frontier = vec![S::Queued];
        while let Some(s) = frontier.pop() {
            for e in T::ALL {
                if let Ok(n) = s.apply(e)
                    && !seen.contains(&n)
                {
                    seen.push(n);
                    frontier.push(n);
                }
            }
        }
        for s in S::ALL {
            assert!(seen.contains(&s), "{s} unreachable");
        }
    }

    fn any_status() -> impl Strategy<Value = S> {
        prop::sample::select(S::ALL.to_vec())
    }

    fn any_event() -> impl Strategy<Value = T> {
        prop::sample::select(T::ALL.to_vec())
    }

    proptest! {
        /// No sequence of events takes a terminal status anywhere else.
        #[test]
        fn terminal_is_forever(start in any_status(), events in prop::collection::vec(any_event(), 0..64)) {
            let mut status = start;
            let mut terminal_at: Option<S> = None;
            for e in events {
                match status.apply(e) {
                    Ok(next) => {
                        prop_assert!(terminal_at.is_none(), "{status} left a terminal status via {e:?}");
                        status = next;
                    }
                    Err(err) => {
                        prop_assert_eq!(err.from, status);
                    }
                }
                if status.is_terminal() {
                    if let Some(t) = terminal_at {
                        prop_assert_eq!(t, status);
                    }
                    terminal_at = Some(status);
                }
            }
        }

        /// A rejected event leaves nothing changed, and an accepted one is in the table.
        #[test]
        fn apply_agrees_with_the_table(from in any_status(), event in any_event()) {
            let expected = LEGAL.iter().find(|&&(f, e, _)| f == from && e == event).map(|&(_, _, t)| t);
            prop_assert_eq!(from.apply(event).ok(), expected);
        }
    }
}
