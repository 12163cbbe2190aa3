//! Ports: what the command pipeline needs from storage, token vendors and time. Adapters (the
//! `store` crate, vendor crates) implement them; services hold them as `Arc<dyn Port>`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kernel::{DomainError, GridId, MeterId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::gatekeeper::HoldReason;
use crate::ids::InteractionId;
use crate::intake::{IntakePlan, IntakeRequest, PendingInteraction};
use crate::shadow::MeterShadow;
use crate::status::{InteractionStatus, Transition};
use crate::token::{StsToken, TokenRequest};

/// One line of an interaction's history (`delivery_failure_history`, newest first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HistoryEntry {
    pub at: DateTime<Utc>,
    /// The status it was in when this happened.
    pub status: InteractionStatus,
    pub reason: String,
    /// A machine code (vendor error code, hold reason code), when there is one.
    pub code: Option<String>,
    /// Nothing will be tried again.
    pub is_final: bool,
}

impl HistoryEntry {
    /// A gatekeeper hold, as written when an interaction is created or re-adjudicated.
    pub fn hold(
        at: DateTime<Utc>,
        status: InteractionStatus,
        reason: &HoldReason,
        is_final: bool,
    ) -> Self {
        let code = serde_json::to_value(reason)
            .ok()
            .and_then(|v| v.get("code").and_then(|c| c.as_str()).map(str::to_owned));
        Self {
            at,
            status,
            reason: reason.to_string(),
            code,
            is_final,
        }
    }
}

/// Everything intake decided for one request, to be stored in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct IntakeCommit {
    pub request: IntakeRequest,
    pub plan: IntakePlan,
    /// The new row's status and why (when the plan creates one).
    pub status: InteractionStatus,
    pub history: Option<HistoryEntry>,
    pub priority: i32,
    pub token: Option<StsToken>,
    /// The shadow after the intent was applied, if the request carries one; saved only if the
    /// stored version is still `shadow_loaded_version`.
    pub shadow: Option<MeterShadow>,
    pub shadow_loaded_version: i64,
    /// Who asked, for the audit trail (`None` for the system's own commands).
    pub requested_by: Requester,
}

/// The account or API key behind a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Requester {
    pub account: Option<kernel::AccountId>,
    pub api_key: Option<kernel::ApiKeyId>,
}

/// What a stored intake answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntakeReceipt {
    /// The created interaction, or the one the request was coalesced into.
    pub interaction: InteractionId,
    pub created: bool,
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait InteractionRepo: Send + Sync {
    /// The meter's unfinished interactions (pending, in flight, verifying), oldest first.
    async fn unfinished(&self, meter: MeterId) -> Result<Vec<PendingInteraction>, DomainError>;

    /// Every SUSPENDED interaction of the grid's meters, for suspension recovery.
    async fn suspended_in_grid(&self, grid: GridId)
    -> Result<Vec<PendingInteraction>, DomainError>;

    /// Stores an intake decision atomically: inserts the new row (or attaches the requester to
    /// the coalesced one), moves `plan.supersede` to SUPERSEDED (`superseded_by` the new row)
    /// and `plan.expire` to EXPIRED, each only from a status that allows it, and saves the
    /// shadow. `Conflict` when the shadow moved meanwhile: plan again.
    async fn commit_intake(&self, commit: IntakeCommit) -> Result<IntakeReceipt, DomainError>;

    /// Applies `event` if the row is still in `from` (compare-and-set), prepending `history`.
    /// Answers the new status, or `None` when the row had moved on (someone else won).
    async fn transition(
        &self,
        id: InteractionId,
        from: InteractionStatus,
        event: Transition,
        history: Option<HistoryEntry>,
    ) -> Result<Option<InteractionStatus>, DomainError>;
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait ShadowRepo: Send + Sync {
    /// `None` when the meter has no shadow yet (start from [`MeterShadow::new`]).
    async fn get(&self, meter: MeterId) -> Result<Option<MeterShadow>, DomainError>;

    /// Saves if the stored version is still `loaded_version`; `Conflict` otherwise.
    async fn save(&self, shadow: MeterShadow, loaded_version: i64) -> Result<(), DomainError>;

    /// Shadows of the grid's commissioned meters, not in manual mode, where some desired
    /// attribute differs from the reported one; at most `limit`, after `after` (paging).
    async fn drifted(
        &self,
        grid: GridId,
        after: Option<MeterId>,
        limit: i64,
    ) -> Result<Vec<MeterShadow>, DomainError>;
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait TokenGenerator: Send + Sync {
    /// `Unavailable` when the vendor is down or not configured.
    async fn generate(&self, request: TokenRequest) -> Result<StsToken, DomainError>;
}

/// The time, injected so rules and services are testable.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::TokenKind;
    use chrono::TimeZone;
    use grids::vocab::CommunicationProtocol;
    use std::sync::Arc;

    #[test]
    fn hold_history_carries_the_reason_code() {
        let at = Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap();
        let e = HistoryEntry::hold(
            at,
            InteractionStatus::Queued,
            &HoldReason::GridNotEnergised,
            false,
        );
        assert_eq!(e.reason, "grid not energised");
        assert_eq!(e.code.as_deref(), Some("grid_not_energised"));
        assert!(!e.is_final);
    }

    #[tokio::test]
    async fn ports_are_object_safe_and_mockable() {
        let at = Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap();
        let mut tokens = MockTokenGenerator::new();
        tokens
            .expect_generate()
            .withf(|r| r.kind == TokenKind::ClearTamper && r.external_reference == "47003333623")
            .times(1)
            .returning(|_| Ok(StsToken::new("1111 2222 3333 4444 5555")));
        let tokens: Arc<dyn TokenGenerator> = Arc::new(tokens);
        let token = tokens
            .generate(TokenRequest {
                meter_id: MeterId(1),
                external_reference: "47003333623".into(),
                protocol: CommunicationProtocol::CalinLorawan,
                decoder_key: None,
                kind: TokenKind::ClearTamper,
                issued_at: at,
            })
            .await
            .unwrap();
        assert_eq!(token.expose(), "11112222333344445555");

        let mut clock = MockClock::new();
        clock.expect_now().return_const(at);
        let clock: Arc<dyn Clock> = Arc::new(clock);
        assert_eq!(clock.now(), at);
        assert!(SystemClock.now() > at);

        let mut shadows = MockShadowRepo::new();
        shadows
            .expect_save()
            .returning(|_, v| Err(DomainError::Conflict(format!("version {v} is stale"))));
        let shadows: Arc<dyn ShadowRepo> = Arc::new(shadows);
        let err = shadows
            .save(MeterShadow::new(MeterId(1)), 3)
            .await
            .unwrap_err();
        assert!(matches!(err, DomainError::Conflict(m) if m.contains('3')));

        let mut repo = MockInteractionRepo::new();
        repo.expect_transition()
            .returning(|_, from, event, _| Ok(from.apply(event).ok()));
        let repo: Arc<dyn InteractionRepo> = Arc::new(repo);
        assert_eq!(
            repo.transition(
                InteractionId(1),
                InteractionStatus::Queued,
                Transition::Claim,
                None
            )
            .await
            .unwrap(),
            Some(InteractionStatus::Processing)
        );
    }
}
