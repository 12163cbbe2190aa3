//! Refunds at the payment provider: when the ledger reverses an order that was paid through a
//! provider (its `provider_transaction_id` set), the money must also go back to the card or
//! account that paid. The store writes a [`ProviderRefundRecord`] (PENDING) in the transaction
//! that posts the reversal (an outbox: no reversal without its provider refund, and never two);
//! [`ProviderRefundService::run_once`] sends it and follows it:
//!
//! * PENDING → SENT (the provider's refund id recorded) → COMPLETED or FAILED once read back;
//! * a refusal (4xx) → FAILED with the provider's message;
//! * no answer (5xx, timeout, connection) → PENDING again after an exponential backoff, and
//!   FAILED after [`RefundPolicy::max_attempts`]. An attempt may have reached the provider even
//!   without an answer (a timeout, or a crash after sending), so every attempt after the first
//!   reads the payment's refunds back first and adopts the one it finds: a refund is never sent
//!   twice.
//!
//! A claim's `attempts` is its fencing token: every claim of a PENDING refund counts one, so a
//! worker whose lease ran out (a slow batch) and whose refund another worker claimed since holds
//! a stale count. Right before the POST the worker re-takes the refund with its count
//! ([`ProviderRefundStore::retake`]) and skips it when that fails; outcomes are written with the
//! same check. Only the holder of the latest claim ever sends.
//!
//! A FAILED provider refund does not undo the ledger's reversal: the customer's money is owed and
//! an operator settles it at the provider (the row shows why).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kernel::{Currency, DomainError, OrderId, OrganizationId, Principal, TenantScope};
use serde::Serialize;
use utoipa::ToSchema;

use crate::gateway::{GatewayError, PaymentGateway, ProviderRefund, ProviderStatus};
use crate::service::MoneyService;
use crate::vocab::Money;

/// Where a provider refund is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProviderRefundStatus {
    /// Written with the reversal; not (knowingly) sent yet.
    Pending,
    /// The provider accepted it; waiting for it to finish.
    Sent,
    /// The money is back with the payer.
    Completed,
    /// Refused, failed at the provider, or never answered: an operator settles it.
    Failed,
}

impl ProviderRefundStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderRefundStatus::Pending => "PENDING",
            ProviderRefundStatus::Sent => "SENT",
            ProviderRefundStatus::Completed => "COMPLETED",
            ProviderRefundStatus::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            ProviderRefundStatus::Pending,
            ProviderRefundStatus::Sent,
            ProviderRefundStatus::Completed,
            ProviderRefundStatus::Failed,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

/// A refund owed at a provider for a reversing order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ProviderRefundRecord {
    #[serde(skip)]
    pub id: i64,
    pub organization_id: OrganizationId,
    /// The reversing order.
    pub order_id: OrderId,
    /// The order it reverses (the provider payment).
    pub original_order_id: OrderId,
    /// `FLUTTERWAVE`.
    pub provider: String,
    /// The payment at the provider being refunded.
    pub provider_transaction_id: String,
    /// Minor units of `currency`.
    pub amount: i64,
    pub currency: Currency,
    pub status: ProviderRefundStatus,
    /// The provider's id of the refund (SENT and after).
    pub provider_refund_id: Option<String>,
    /// Send attempts made so far.
    pub attempts: i32,
    /// When the worker looks at it next (open refunds only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Why it FAILED (the provider's message, or the last error when it never answered).
    pub failure_reason: Option<String>,
    /// The last error of an open refund (it is retried).
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl ProviderRefundRecord {
    pub fn money(&self) -> Money {
        Money::new(self.amount, self.currency)
    }
}

/// What one look at a claimed refund decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundOutcome {
    /// PENDING → SENT: the provider holds this refund.
    Sent {
        provider_refund_id: String,
        next_look_at: DateTime<Utc>,
    },
    /// → COMPLETED.
    Completed { provider_refund_id: String },
    /// → FAILED with the reason.
    Failed { reason: String },
    /// Same status, looked at again at `next_attempt_at` (`error` recorded when there was one).
    Later {
        error: Option<String>,
        next_attempt_at: DateTime<Utc>,
    },
}

/// Provider refunds as stored.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait ProviderRefundStore: Send + Sync {
    /// Claims up to `limit` open refunds due at `now` (`FOR UPDATE SKIP LOCKED`, so instances
    /// share the queue): each is pushed out to `now + lease` (a crashed worker's claim expires),
    /// and a PENDING one counts a send attempt. Returns them as claimed.
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: i64,
    ) -> Result<Vec<ProviderRefundRecord>, DomainError>;
    /// Takes a claimed refund again right before it is sent: only while it is still PENDING with
    /// the `attempts` our claim counted (nobody claimed it since, e.g. after our lease ran out),
    /// pushing its lease out to `lease` from now. False: another worker holds it and it must not
    /// be sent by us.
    async fn retake(&self, id: i64, attempts: i32, lease: Duration) -> Result<bool, DomainError>;
    /// Applies `outcome` if the refund is still in status `from` with `attempts` (compare-and-set:
    /// a stale claim writes nothing); status changes are audited in the same transaction. False
    /// when it had moved on.
    async fn record_outcome(
        &self,
        id: i64,
        from: ProviderRefundStatus,
        attempts: i32,
        outcome: RefundOutcome,
    ) -> Result<bool, DomainError>;
    /// The refund `provider` knows as `provider_refund_id` (any organization: a webhook names no
    /// tenant).
    async fn by_provider_refund_id(
        &self,
        provider: &str,
        provider_refund_id: &str,
    ) -> Result<Option<ProviderRefundRecord>, DomainError>;
    /// The refunds of the payment `provider_transaction_id` at `provider` (any organization).
    async fn for_payment(
        &self,
        provider: &str,
        provider_transaction_id: &str,
    ) -> Result<Vec<ProviderRefundRecord>, DomainError>;
    /// The provider refund of the reversing order `order`, within `scope`.
    async fn for_order(
        &self,
        scope: TenantScope,
        order: OrderId,
    ) -> Result<Option<ProviderRefundRecord>, DomainError>;
}

/// What a provider's refund webhook names. Only used to find our refund: its outcome is read
/// back from the provider's API, never taken from the webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundNotice {
    /// `FLUTTERWAVE`.
    pub provider: String,
    pub provider_refund_id: Option<String>,
    /// With `amount`, finds the refund when the notice has no refund id.
    pub provider_transaction_id: Option<String>,
    pub amount: Option<Money>,
}

/// What a refund notice did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoticeOutcome {
    /// No refund of ours matches (a refund made elsewhere, or an id we never recorded).
    Unknown,
    /// Ours, but not known to be sent (PENDING): the worker reads the payment's refunds back
    /// before it sends, so it adopts the provider's refund then.
    NotSent { order: OrderId },
    /// Already COMPLETED or FAILED (a duplicate notice, or the poll was first): unchanged.
    AlreadySettled {
        order: OrderId,
        status: ProviderRefundStatus,
    },
    /// The provider still reports it pending: it stays SENT and the poll follows it.
    StillPending { order: OrderId },
    /// Settled now from the provider's answer.
    Settled {
        order: OrderId,
        status: ProviderRefundStatus,
    },
}

/// Timings of the refund worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefundPolicy {
    /// Send attempts before a refund the provider never answered is FAILED.
    pub max_attempts: i32,
    /// The wait after the first unanswered attempt; doubled after each further one.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// How often a SENT refund is read back (refunds take days at the provider).
    pub poll_every: Duration,
    /// How long a claim holds a refund. Safety needs only `lease` > one provider call (the
    /// refund is re-taken for a fresh lease right before its POST, and the POST's outcome is
    /// written within it); `batch` × 2 calls × the call timeout ≤ `lease` also keeps a whole
    /// pass inside its claim, so no refund is looked at by two workers (wasted read-backs).
    pub lease: Duration,
    /// Refunds claimed per pass (see `lease`).
    pub batch: i64,
}

impl Default for RefundPolicy {
    fn default() -> Self {
        RefundPolicy {
            max_attempts: 8,
            first_backoff: Duration::from_secs(30),
            max_backoff: Duration::from_secs(3600),
            poll_every: Duration::from_secs(600),
            // 10 refunds × 2 calls × Flutterwave's 15 s timeout = 300 s: within the lease.
            lease: Duration::from_secs(300),
            batch: 10,
        }
    }
}

impl RefundPolicy {
    /// The wait after `attempts` unanswered attempts: first_backoff · 2^(attempts−1), capped.
    pub fn backoff(&self, attempts: i32) -> Duration {
        let doublings = attempts.saturating_sub(1).clamp(0, 30) as u32;
        self.first_backoff
            .checked_mul(1u32 << doublings)
            .map_or(self.max_backoff, |d| d.min(self.max_backoff))
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RefundReport {
    pub sent: usize,
    pub completed: usize,
    pub failed: usize,
    /// Unanswered attempts and still-pending read-backs, to be looked at again.
    pub retried: usize,
    /// Refunds not sent because another worker claimed them after our lease ran out.
    pub lost_claims: usize,
    /// Refunds whose outcome could not be recorded (looked at again when their claim expires).
    pub errors: Vec<(OrderId, String)>,
}

/// Sends provider refunds and follows them; shows them to the organization.
#[derive(Clone)]
pub struct ProviderRefundService {
    store: Arc<dyn ProviderRefundStore>,
    gateway: Option<Arc<dyn PaymentGateway>>,
    money: MoneyService,
    policy: RefundPolicy,
}

fn after(now: DateTime<Utc>, wait: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(wait)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(now)
}

impl ProviderRefundService {
    pub fn new(store: Arc<dyn ProviderRefundStore>, money: MoneyService) -> Self {
        Self {
            store,
            gateway: None,
            money,
            policy: RefundPolicy::default(),
        }
    }

    pub fn with_gateway(mut self, gateway: Arc<dyn PaymentGateway>) -> Self {
        self.gateway = Some(gateway);
        self
    }

    pub fn with_policy(mut self, policy: RefundPolicy) -> Self {
        self.policy = policy;
        self
    }

    pub fn policy(&self) -> RefundPolicy {
        self.policy
    }

    /// The provider refund of a reversing order the caller may see (its order's visibility:
    /// staff with `money_read`, or the agent or customer whose wallet it touches).
    pub async fn for_order(
        &self,
        who: &Principal,
        order: OrderId,
    ) -> Result<ProviderRefundRecord, DomainError> {
        self.money.order(who, order).await?;
        self.store
            .for_order(who.scope(), order)
            .await?
            .ok_or(DomainError::NotFound("provider refund"))
    }

    /// One pass over the refunds due at `now`. Without a provider configured nothing is claimed
    /// (the refunds wait, visible as PENDING).
    pub async fn run_once(&self, now: DateTime<Utc>) -> Result<RefundReport, DomainError> {
        let mut report = RefundReport::default();
        let Some(gateway) = &self.gateway else {
            return Ok(report);
        };
        let claimed = self
            .store
            .claim_due(now, self.policy.lease, self.policy.batch)
            .await?;
        for refund in claimed {
            let from = refund.status;
            let outcome = match from {
                ProviderRefundStatus::Pending => {
                    match self.send(gateway.as_ref(), &refund, now).await {
                        Ok(Some(outcome)) => outcome,
                        Ok(None) => {
                            tracing::info!(
                                order = refund.order_id.get(),
                                attempts = refund.attempts,
                                "provider refund claimed by another worker after our lease ran \
                                 out; not sent by us"
                            );
                            report.lost_claims += 1;
                            continue;
                        }
                        Err(e) => {
                            // Not sent; due again when the claim expires.
                            report
                                .errors
                                .push((refund.order_id, format!("re-taking it to send: {e}")));
                            continue;
                        }
                    }
                }
                ProviderRefundStatus::Sent => self.read_back(gateway.as_ref(), &refund, now).await,
                // Never claimed; nothing to do.
                ProviderRefundStatus::Completed | ProviderRefundStatus::Failed => continue,
            };
            match &outcome {
                RefundOutcome::Sent { .. } => report.sent += 1,
                RefundOutcome::Completed { .. } => report.completed += 1,
                RefundOutcome::Failed { reason } => {
                    tracing::warn!(
                        order = refund.order_id.get(),
                        transaction = %refund.provider_transaction_id,
                        %reason,
                        "provider refund FAILED; an operator must settle it at the provider"
                    );
                    report.failed += 1;
                }
                RefundOutcome::Later { .. } => report.retried += 1,
            }
            if let Err(e) = self
                .store
                .record_outcome(refund.id, from, refund.attempts, outcome)
                .await
            {
                report.errors.push((refund.order_id, e.to_string()));
            }
        }
        Ok(report)
    }

    /// A provider's refund webhook: finds our refund, reads it back from the provider and
    /// settles a SENT one from that answer at once (compare-and-set, audited by the store), so
    /// a duplicate notice or a refund already settled changes nothing. A provider that does not
    /// answer is an error (the notice is retried; the poll remains the backstop).
    pub async fn on_refund_notice(
        &self,
        notice: &RefundNotice,
    ) -> Result<NoticeOutcome, DomainError> {
        let found = match (&notice.provider_refund_id, &notice.provider_transaction_id) {
            (Some(id), _) => {
                self.store
                    .by_provider_refund_id(&notice.provider, id)
                    .await?
            }
            (None, Some(tx)) => {
                let candidates = self.store.for_payment(&notice.provider, tx).await?;
                match_notice(notice, candidates)
            }
            (None, None) => None,
        };
        let Some(refund) = found else {
            return Ok(NoticeOutcome::Unknown);
        };
        let order = refund.order_id;
        match refund.status {
            ProviderRefundStatus::Pending => return Ok(NoticeOutcome::NotSent { order }),
            status @ (ProviderRefundStatus::Completed | ProviderRefundStatus::Failed) => {
                return Ok(NoticeOutcome::AlreadySettled { order, status });
            }
            ProviderRefundStatus::Sent => {}
        }
        let Some(gateway) = &self.gateway else {
            return Err(DomainError::Unavailable(
                "no payment provider is configured to read the refund back".into(),
            ));
        };
        let Some(refund_id) = refund.provider_refund_id.clone() else {
            // The database refuses a SENT row without the id; never here.
            return Err(DomainError::Internal(
                "a SENT provider refund without its id".into(),
            ));
        };
        let answer = gateway
            .refund_status(Some(refund.organization_id), &refund_id, refund.currency)
            .await
            .map_err(|e| {
                DomainError::Unavailable(format!("reading refund {refund_id} back: {e}"))
            })?;
        let Some(outcome) = settled(answer, refund_id) else {
            return Ok(NoticeOutcome::StillPending { order });
        };
        let status = match &outcome {
            RefundOutcome::Completed { .. } => ProviderRefundStatus::Completed,
            RefundOutcome::Failed { .. } => ProviderRefundStatus::Failed,
            RefundOutcome::Sent { .. } | RefundOutcome::Later { .. } => ProviderRefundStatus::Sent,
        };
        if self
            .store
            .record_outcome(
                refund.id,
                ProviderRefundStatus::Sent,
                refund.attempts,
                outcome,
            )
            .await?
        {
            Ok(NoticeOutcome::Settled { order, status })
        } else {
            // Another look settled it between our read and our write.
            Ok(NoticeOutcome::AlreadySettled { order, status })
        }
    }

    /// A PENDING refund: read back first when an earlier attempt may have reached the provider,
    /// then send it. `None` when our claim is stale (another worker claimed it since): nothing
    /// is sent and nothing is to be recorded.
    async fn send(
        &self,
        gateway: &dyn PaymentGateway,
        refund: &ProviderRefundRecord,
        now: DateTime<Utc>,
    ) -> Result<Option<RefundOutcome>, DomainError> {
        let org = Some(refund.organization_id);
        let tx = refund.provider_transaction_id.as_str();
        if refund.attempts > 1 {
            match gateway.refunds_of(org, tx, refund.currency).await {
                Ok(found) => {
                    if let Some(outcome) = adopt(refund, found, now) {
                        return Ok(Some(outcome));
                    }
                }
                // Not knowing whether it was sent, it is not sent again.
                Err(e) if refund.attempts > self.policy.max_attempts => {
                    return Ok(Some(RefundOutcome::Failed {
                        reason: format!(
                            "the provider did not answer {} attempts and whether it refunded \
                             is unknown (check there before refunding by hand): {e}",
                            self.policy.max_attempts
                        ),
                    }));
                }
                Err(e) => return Ok(Some(self.unanswered(refund, &e, now))),
            }
        }
        if refund.attempts > self.policy.max_attempts {
            return Ok(Some(RefundOutcome::Failed {
                reason: format!(
                    "the provider did not answer {} attempts; last error: {}",
                    self.policy.max_attempts,
                    refund.last_error.as_deref().unwrap_or("none recorded")
                ),
            }));
        }
        // Our lease may have run out while earlier refunds of the batch were called (or during
        // the read-back): only the latest claim may send, and the fresh lease covers the POST.
        if !self
            .store
            .retake(refund.id, refund.attempts, self.policy.lease)
            .await?
        {
            return Ok(None);
        }
        let outcome = match gateway.refund(org, tx, refund.money()).await {
            Ok(r) => RefundOutcome::Sent {
                provider_refund_id: r.id,
                next_look_at: after(now, self.policy.poll_every),
            },
            Err(GatewayError::Refused(m)) => RefundOutcome::Failed { reason: m },
            Err(GatewayError::NotFound) => RefundOutcome::Failed {
                reason: format!("the provider knows no payment {tx}"),
            },
            // Not sent is retried like no answer: the read-back before a resend costs one call.
            Err(e @ (GatewayError::Unavailable(_) | GatewayError::NotSent(_))) => {
                self.unanswered(refund, &e, now)
            }
        };
        Ok(Some(outcome))
    }

    fn unanswered(
        &self,
        refund: &ProviderRefundRecord,
        error: &GatewayError,
        now: DateTime<Utc>,
    ) -> RefundOutcome {
        RefundOutcome::Later {
            error: Some(error.to_string()),
            next_attempt_at: after(now, self.policy.backoff(refund.attempts.max(1))),
        }
    }

    /// A SENT refund: read back until the provider settles it. Errors only delay the next look.
    async fn read_back(
        &self,
        gateway: &dyn PaymentGateway,
        refund: &ProviderRefundRecord,
        now: DateTime<Utc>,
    ) -> RefundOutcome {
        let Some(refund_id) = refund.provider_refund_id.clone() else {
            // The database refuses a SENT row without the id; never here.
            return RefundOutcome::Failed {
                reason: "sent without a provider refund id".into(),
            };
        };
        let later = |error: Option<String>| RefundOutcome::Later {
            error,
            next_attempt_at: after(now, self.policy.poll_every),
        };
        match gateway
            .refund_status(Some(refund.organization_id), &refund_id, refund.currency)
            .await
        {
            Ok(r) => settled(r, refund_id).unwrap_or_else(|| later(None)),
            Err(e) => later(Some(e.to_string())),
        }
    }
}

/// The outcome a read-back of our refund `refund_id` settles it with; `None` while the provider
/// still moves it.
fn settled(answer: ProviderRefund, refund_id: String) -> Option<RefundOutcome> {
    match answer.status {
        ProviderStatus::Successful => Some(RefundOutcome::Completed {
            provider_refund_id: refund_id,
        }),
        ProviderStatus::Failed => Some(RefundOutcome::Failed {
            reason: answer
                .failure_reason
                .unwrap_or_else(|| "the provider reports the refund failed".into()),
        }),
        ProviderStatus::Pending => None,
    }
}

/// Which of the payment's refunds a notice without a refund id is about: the one of the
/// notice's amount, a SENT one first (only a SENT one can be settled by it). Without an amount
/// none is (a payment may have several refunds).
fn match_notice(
    notice: &RefundNotice,
    candidates: Vec<ProviderRefundRecord>,
) -> Option<ProviderRefundRecord> {
    let amount = notice.amount?;
    let mut same_amount: Vec<ProviderRefundRecord> = candidates
        .into_iter()
        .filter(|r| r.money() == amount)
        .collect();
    let sent = same_amount
        .iter()
        .position(|r| r.status == ProviderRefundStatus::Sent)
        .unwrap_or(0);
    (sent < same_amount.len()).then(|| same_amount.swap_remove(sent))
}

/// What the payment's refunds at the provider say about ours: `None` when there is none
/// (send it).
fn adopt(
    refund: &ProviderRefundRecord,
    found: Vec<ProviderRefund>,
    now: DateTime<Utc>,
) -> Option<RefundOutcome> {
    if found.is_empty() {
        return None;
    }
    let ours = found
        .iter()
        .find(|r| r.amount == Some(refund.money()) && r.status != ProviderStatus::Failed)
        .or_else(|| found.iter().find(|r| r.amount == Some(refund.money())));
    Some(match ours {
        Some(r) => RefundOutcome::Sent {
            provider_refund_id: r.id.clone(),
            // Read back at once: it may be final already.
            next_look_at: now,
        },
        // Someone refunded another amount (at the dashboard?): sending ours could refund
        // more than was paid.
        None => RefundOutcome::Failed {
            reason: format!(
                "the payment already has a refund of another amount at the provider ({}); \
                 settle it there",
                found
                    .iter()
                    .map(|r| r.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_fits_in_its_lease_with_flutterwaves_call_timeout() {
        let p = RefundPolicy::default();
        let call_timeout = Duration::from_secs(15);
        let worst_row = call_timeout * 2;
        assert!(worst_row * u32::try_from(p.batch).unwrap() <= p.lease);
        assert!(p.lease > call_timeout);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = RefundPolicy::default();
        assert_eq!(p.backoff(1), Duration::from_secs(30));
        assert_eq!(p.backoff(2), Duration::from_secs(60));
        assert_eq!(p.backoff(4), Duration::from_secs(240));
        assert_eq!(p.backoff(10), Duration::from_secs(3600));
        assert_eq!(p.backoff(i32::MAX), Duration::from_secs(3600));
        assert_eq!(p.backoff(0), Duration::from_secs(30));
    }

    fn record(amount: i64) -> ProviderRefundRecord {
        let now = Utc::now();
        ProviderRefundRecord {
            id: 1,
            organization_id: OrganizationId(1),
            order_id: OrderId(2),
            original_order_id: OrderId(1),
            provider: "FLUTTERWAVE".into(),
            provider_transaction_id: "7001".into(),
            amount,
            currency: Currency::parse("NGN").unwrap(),
            status: ProviderRefundStatus::Pending,
            provider_refund_id: None,
            attempts: 2,
            next_attempt_at: Some(now),
            failure_reason: None,
            last_error: Some("timed out".into()),
            created_at: now,
            updated_at: now,
            completed_at: None,
        }
    }

    fn found(id: &str, minor: i64, status: ProviderStatus) -> ProviderRefund {
        ProviderRefund {
            id: id.into(),
            status,
            amount: Some(Money::new(minor, Currency::parse("NGN").unwrap())),
            failure_reason: None,
        }
    }

    #[test]
    fn a_read_back_adopts_our_refund_sends_when_there_is_none_and_never_adds_to_another() {
        let now = Utc::now();
        let ours = record(10_000);
        assert_eq!(adopt(&ours, Vec::new(), now), None);
        assert_eq!(
            adopt(
                &ours,
                vec![
                    found("1", 10_000, ProviderStatus::Failed),
                    found("2", 10_000, ProviderStatus::Pending)
                ],
                now
            ),
            Some(RefundOutcome::Sent {
                provider_refund_id: "2".into(),
                next_look_at: now
            })
        );
        match adopt(
            &ours,
            vec![found("3", 4_000, ProviderStatus::Successful)],
            now,
        ) {
            Some(RefundOutcome::Failed { reason }) => assert!(reason.contains("another amount")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_notice_without_a_refund_id_matches_by_amount_preferring_a_sent_refund() {
        let ngn = Currency::parse("NGN").unwrap();
        let notice = |minor: Option<i64>| RefundNotice {
            provider: "FLUTTERWAVE".into(),
            provider_refund_id: None,
            provider_transaction_id: Some("7001".into()),
            amount: minor.map(|m| Money::new(m, ngn)),
        };
        let mut settled_one = record(10_000);
        settled_one.id = 1;
        settled_one.status = ProviderRefundStatus::Completed;
        let mut sent = record(10_000);
        sent.id = 2;
        sent.status = ProviderRefundStatus::Sent;
        let other_amount = record(4_000);
        let all = vec![settled_one.clone(), sent.clone(), other_amount.clone()];
        assert_eq!(match_notice(&notice(Some(10_000)), all.clone()), Some(sent));
        assert_eq!(
            match_notice(&notice(Some(10_000)), vec![settled_one.clone()]),
            Some(settled_one)
        );
        assert_eq!(
            match_notice(&notice(Some(4_000)), all.clone()),
            Some(other_amount)
        );
        assert_eq!(match_notice(&notice(Some(1)), all.clone()), None);
        assert_eq!(match_notice(&notice(None), all), None);
    }

    #[test]
    fn statuses_round_trip() {
        for s in [
            ProviderRefundStatus::Pending,
            ProviderRefundStatus::Sent,
            ProviderRefundStatus::Completed,
            ProviderRefundStatus::Failed,
        ] {
            assert_eq!(ProviderRefundStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(ProviderRefundStatus::parse("sent"), None);
    }
}
