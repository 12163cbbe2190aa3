//! Meter credit purchase: a completed ENERGY_TOPUP order to a meter's wallet becomes energy and
//! one TOP_UP interaction whose STS token the command pipeline delivers.
//!
//! * Pricing is pure ([`price`]): energy = amount ÷ tariff, the meter's own tariff if it has one,
//!   else the grid's HPS or FS tariff by meter type, rounded **up** to 0.1 kWh in the customer's
//!   favour (the predecessor's `ceil(kwh·10)/10`), in watt-hours.
//! * Each order gets exactly one purchase (`meter_purchases.order_id` is unique), created by
//!   [`PurchaseService::run_once`] (a worker) and followed until its interaction finishes:
//!   SUCCESSFUL → DELIVERED; FAILED, ABORTED or EXPIRED → FAILED with the reason. A token that
//!   cannot be generated fails the purchase at once. The money is never silently kept: a FAILED
//!   purchase shows why, and an operator re-delivers it (a new TOP_UP with a fresh token, same
//!   energy) or refunds it (reversing posting meter wallet → payer).

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use grids::vocab::MeterType;
use kernel::{
    Currency, DomainError, GridId, MeterId, MinorUnits, OrderId, OrganizationId, Page, PageRequest,
    Permission, Principal, TenantScope, WalletId,
};
use meters::{
    CommandService, IntakeRequest, InteractionId, InteractionStatus, InteractionType, Origin,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A meter credit purchase (one per completed top-up order).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(transparent)]
#[schema(value_type = i64)]
pub struct PurchaseId(pub i64);

impl PurchaseId {
    pub const fn get(self) -> i64 {
        self.0
    }
}

impl std::fmt::Display for PurchaseId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Watt-hours per pricing step: energy is sold in whole 0.1 kWh.
pub const ENERGY_STEP_WH: i64 = 100;

/// Which tariff priced a purchase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TariffSource {
    /// The meter's own tariff.
    Meter,
    /// The grid's essential-service tariff (HPS meters).
    GridHps,
    /// The grid's full-service tariff (FS meters).
    GridFs,
}

impl TariffSource {
    pub fn as_str(self) -> &'static str {
        match self {
            TariffSource::Meter => "METER",
            TariffSource::GridHps => "GRID_HPS",
            TariffSource::GridFs => "GRID_FS",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            TariffSource::Meter,
            TariffSource::GridHps,
            TariffSource::GridFs,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }
}

/// What pricing needs to know about the meter and its grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PricingFacts {
    /// The meter's own tariff (minor units per kWh), when it has one.
    pub meter_tariff_minor_per_kwh: Option<i64>,
    pub meter_type: MeterType,
    pub grid_hps_tariff_minor_per_kwh: i64,
    pub grid_fs_tariff_minor_per_kwh: i64,
}

/// A tariff chosen for a purchase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tariff {
    pub minor_per_kwh: i64,
    pub source: TariffSource,
}

/// Energy sold for an amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Priced {
    pub energy_wh: i64,
    pub tariff: Tariff,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    #[error("no {0} tariff is set (it is zero or missing), so the energy cannot be priced")]
    NoTariff(&'static str),
    #[error("the amount must be above zero")]
    NothingPaid,
    #[error("the amount is too large to price")]
    TooLarge,
}

/// The tariff for the meter: its own if it has one (a zero or negative own tariff is an error,
/// as in the predecessor, never a silent fall-back), else the grid's by meter type.
pub fn tariff_for(facts: &PricingFacts) -> Result<Tariff, PricingError> {
    let (minor_per_kwh, source, name) = match facts.meter_tariff_minor_per_kwh {
        Some(own) => (own, TariffSource::Meter, "meter"),
        None => match facts.meter_type {
            MeterType::Hps => (
                facts.grid_hps_tariff_minor_per_kwh,
                TariffSource::GridHps,
                "grid HPS",
            ),
            MeterType::Fs => (
                facts.grid_fs_tariff_minor_per_kwh,
                TariffSource::GridFs,
                "grid FS",
            ),
        },
    };
    if minor_per_kwh <= 0 {
        return Err(PricingError::NoTariff(name));
    }
    Ok(Tariff {
        minor_per_kwh,
        source,
    })
}

/// Watt-hours for `amount_minor` at `tariff_minor_per_kwh`, rounded up to whole 0.1 kWh: the
/// customer never gets less than paid for, and at most one step more.
pub fn energy_for(amount_minor: i64, tariff_minor_per_kwh: i64) -> Result<i64, PricingError> {
    if amount_minor <= 0 {
        return Err(PricingError::NothingPaid);
    }
    if tariff_minor_per_kwh <= 0 {
        return Err(PricingError::NoTariff("purchase"));
    }
    // steps of 0.1 kWh = ceil(amount × 10 / tariff); i128 so no product overflows.
    let numerator = i128::from(amount_minor) * 10;
    let tariff = i128::from(tariff_minor_per_kwh);
    let steps = (numerator + tariff - 1) / tariff;
    i64::try_from(steps * i128::from(ENERGY_STEP_WH)).map_err(|_| PricingError::TooLarge)
}

/// Prices a purchase of `amount_minor` for the meter.
pub fn price(amount_minor: i64, facts: &PricingFacts) -> Result<Priced, PricingError> {
    let tariff = tariff_for(facts)?;
    Ok(Priced {
        energy_wh: energy_for(amount_minor, tariff.minor_per_kwh)?,
        tariff,
    })
}

/// `meter_purchases.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PurchaseStatus {
    /// A TOP_UP is on its way (or being created).
    Pending,
    /// The meter accepted the token.
    Delivered,
    /// Pricing, token generation or delivery failed: re-deliver or refund.
    Failed,
    /// The money went back to the payer.
    Refunded,
}

impl PurchaseStatus {
    pub const ALL: [PurchaseStatus; 4] = [
        PurchaseStatus::Pending,
        PurchaseStatus::Delivered,
        PurchaseStatus::Failed,
        PurchaseStatus::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PurchaseStatus::Pending => "PENDING",
            PurchaseStatus::Delivered => "DELIVERED",
            PurchaseStatus::Failed => "FAILED",
            PurchaseStatus::Refunded => "REFUNDED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Whether a purchase may move from `self` to `to`. Only a FAILED purchase is re-delivered
    /// (back to PENDING) or refunded; DELIVERED and REFUNDED are final.
    pub fn may_become(self, to: PurchaseStatus) -> bool {
        use PurchaseStatus as S;
        match (self, to) {
            (S::Pending, S::Delivered | S::Failed) => true,
            (S::Failed, S::Pending | S::Refunded) => true,
            (S::Pending, S::Pending | S::Refunded)
            | (S::Failed, S::Delivered | S::Failed)
            | (S::Delivered, _)
            | (S::Refunded, _) => false,
        }
    }
}

/// What a finished (or unfinished) interaction means for its purchase.
pub fn outcome_of(status: InteractionStatus) -> Option<PurchaseStatus> {
    use InteractionStatus as I;
    match status {
        I::Successful => Some(PurchaseStatus::Delivered),
        // A TOP_UP is never superseded; if one ever were, its token was not delivered.
        I::Failed | I::Aborted | I::Expired | I::Superseded => Some(PurchaseStatus::Failed),
        I::Queued | I::Suspended | I::Deferred | I::Processing | I::Verifying => None,
    }
}

/// A purchase as operators see it (never the token).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Purchase {
    pub id: PurchaseId,
    pub organization_id: OrganizationId,
    pub order_id: OrderId,
    pub meter_id: MeterId,
    pub grid_id: Option<GridId>,
    /// What was paid.
    #[schema(value_type = i64)]
    pub amount_minor: MinorUnits,
    pub currency: Currency,
    /// Energy sold (0 when it could not be priced).
    pub energy_wh: i64,
    /// Minor units per kWh (absent when no tariff could be found).
    pub tariff_minor_per_kwh: Option<i64>,
    pub tariff_source: Option<TariffSource>,
    pub status: PurchaseStatus,
    /// Why it FAILED (kept after a re-delivery for the record until it succeeds).
    pub failure_reason: Option<String>,
    /// The TOP_UP carrying the current token.
    #[schema(value_type = Option<i64>)]
    pub interaction_id: Option<InteractionId>,
    /// TOP_UPs created so far (1 + re-deliveries).
    pub attempts: i32,
    /// The payer's wallet (where a refund goes).
    pub payer_wallet_id: WalletId,
    pub meter_wallet_id: WalletId,
    /// The order posting a refund made.
    pub refund_order_id: Option<OrderId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PurchaseFilter {
    pub status: Option<PurchaseStatus>,
    pub meter_id: Option<MeterId>,
    pub grid_id: Option<GridId>,
    pub order_id: Option<OrderId>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
}

/// A completed top-up order to a meter wallet that has no purchase yet.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletedTopUp {
    pub order_id: OrderId,
    pub meter_id: MeterId,
    pub amount_minor: i64,
    pub order_currency: Currency,
    pub grid_currency: Option<Currency>,
    /// `None` when the meter is not on a grid (it cannot be priced or served).
    pub pricing: Option<PricingFacts>,
}

/// How a new purchase starts.
#[derive(Debug, Clone, PartialEq)]
pub enum Opening {
    /// Priced: PENDING, claimed by this worker until its TOP_UP is attached.
    Priced(Priced),
    /// Cannot be priced: FAILED at once with this reason.
    Unpriceable(String),
}

/// A PENDING purchase whose interaction has finished.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedDelivery {
    pub purchase: PurchaseId,
    pub interaction: InteractionId,
    pub status: InteractionStatus,
    /// The newest history entry's reason.
    pub reason: Option<String>,
}

/// Who acted (audit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Actor {
    pub account: Option<kernel::AccountId>,
    pub api_key: Option<kernel::ApiKeyId>,
}

impl Actor {
    pub fn of(who: &Principal) -> Self {
        Actor {
            account: who.account_id,
            api_key: who.api_key_id(),
        }
    }
}

/// Storage of purchases. Every change is a compare-and-set on the status (and audited).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait PurchaseRepo: Send + Sync {
    /// COMPLETED ENERGY_TOPUP orders to meter wallets without a purchase, oldest first.
    async fn completed_top_ups_without_purchase(
        &self,
        limit: i64,
    ) -> Result<Vec<CompletedTopUp>, DomainError>;
    /// Creates the order's purchase unless it has one: `Some` when this call created it. A
    /// priced purchase starts PENDING and claimed (`claimed_at` = now).
    async fn open(&self, order: OrderId, opening: Opening)
    -> Result<Option<Purchase>, DomainError>;
    /// Links the TOP_UP to a PENDING, claimed purchase and releases the claim.
    async fn attach(&self, id: PurchaseId, interaction: InteractionId) -> Result<(), DomainError>;
    /// PENDING → FAILED (only while it is still PENDING with `interaction`, or unattached when
    /// `interaction` is `None`); false when it had moved on.
    async fn fail(
        &self,
        id: PurchaseId,
        interaction: Option<InteractionId>,
        reason: &str,
    ) -> Result<bool, DomainError>;
    /// PENDING → DELIVERED while the purchase still waits for `interaction`.
    async fn deliver(
        &self,
        id: PurchaseId,
        interaction: InteractionId,
    ) -> Result<bool, DomainError>;
    /// PENDING purchases whose interaction has finished.
    async fn finished_deliveries(&self, limit: i64) -> Result<Vec<FinishedDelivery>, DomainError>;
    /// PENDING purchases claimed before `before` and never attached (a worker stopped between
    /// the token and the link): they are failed, never retried blindly, because a TOP_UP may
    /// exist. Answers how many.
    async fn fail_abandoned(&self, before: DateTime<Utc>, reason: &str)
    -> Result<u64, DomainError>;
    /// FAILED → PENDING, claimed, for a re-delivery; false when it was not FAILED.
    async fn claim_redelivery(&self, id: PurchaseId, by: Actor) -> Result<bool, DomainError>;
    /// FAILED → REFUNDED together with the reversing posting (meter wallet → payer) in one
    /// transaction. `Conflict` when it is not FAILED or the meter wallet cannot cover it.
    async fn refund(&self, id: PurchaseId, by: Actor) -> Result<(), DomainError>;
    /// Sets (or clears) the meter's own tariff, audited; false when the meter is not visible.
    async fn set_meter_tariff(
        &self,
        scope: TenantScope,
        meter: MeterId,
        tariff_minor_per_kwh: Option<i64>,
        by: Actor,
    ) -> Result<bool, DomainError>;
    async fn list(
        &self,
        scope: TenantScope,
        filter: PurchaseFilter,
        page: PageRequest,
    ) -> Result<Vec<Purchase>, DomainError>;
    async fn get(
        &self,
        scope: TenantScope,
        id: PurchaseId,
    ) -> Result<Option<Purchase>, DomainError>;
}

/// Sends a TOP_UP through the command pipeline (the normal intake: gatekeeper, STS token).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait TopUpSender: Send + Sync {
    async fn top_up(&self, meter: MeterId, energy_wh: i64) -> Result<InteractionId, DomainError>;
}

#[async_trait]
impl TopUpSender for CommandService {
    async fn top_up(&self, meter: MeterId, energy_wh: i64) -> Result<InteractionId, DomainError> {
        let mut request = IntakeRequest::new(meter, InteractionType::TopUp, Origin::Order);
        request.energy_wh = Some(energy_wh);
        // Value-carrying tokens are never coalesced: this always creates one interaction.
        let (view, _) = self.submit(request, None).await?;
        Ok(view.id)
    }
}

/// What one worker pass did.
#[derive(Debug, Default)]
pub struct PurchaseReport {
    pub opened: usize,
    pub delivered: usize,
    pub failed: usize,
    /// Completed top-ups that could not be opened (looked at again next pass).
    pub errors: Vec<(OrderId, DomainError)>,
    /// Purchases whose finished delivery could not be recorded (looked at again next pass).
    pub settle_errors: Vec<(PurchaseId, DomainError)>,
}

/// How long a claimed, unattached purchase may stay so before it counts as abandoned.
pub const CLAIM_TIMEOUT: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

const BATCH: i64 = 100;

#[derive(Clone)]
pub struct PurchaseService {
    repo: Arc<dyn PurchaseRepo>,
    sender: Arc<dyn TopUpSender>,
}

impl PurchaseService {
    pub fn new(repo: Arc<dyn PurchaseRepo>, sender: Arc<dyn TopUpSender>) -> Self {
        Self { repo, sender }
    }

    /// One worker pass: purchases for newly completed top-ups, outcomes of finished TOP_UPs,
    /// abandoned claims. Idempotent; instances may run it concurrently (the unique order link
    /// and compare-and-set transitions decide).
    pub async fn run_once(&self, now: DateTime<Utc>) -> Result<PurchaseReport, DomainError> {
        let mut report = PurchaseReport::default();
        for top_up in self.repo.completed_top_ups_without_purchase(BATCH).await? {
            let order = top_up.order_id;
            match self.open_one(top_up).await {
                Ok(Some(PurchaseStatus::Failed)) => {
                    report.opened += 1;
                    report.failed += 1;
                }
                Ok(Some(_)) => report.opened += 1,
                Ok(None) => {}
                Err(e) => report.errors.push((order, e)),
            }
        }
        for done in self.repo.finished_deliveries(BATCH).await? {
            match outcome_of(done.status) {
                // One purchase whose delivery cannot be recorded (its sale refused, say) must not
                // stall the others: they come in id order, so it would be first on every pass.
                Some(PurchaseStatus::Delivered) => {
                    match self.repo.deliver(done.purchase, done.interaction).await {
                        Ok(moved) => report.delivered += usize::from(moved),
                        Err(e) => report.settle_errors.push((done.purchase, e)),
                    }
                }
                Some(_) => {
                    let reason = format!(
                        "TOP_UP interaction {} ended {}: {}",
                        done.interaction,
                        done.status.as_str(),
                        done.reason.as_deref().unwrap_or("no reason recorded")
                    );
                    match self
                        .repo
                        .fail(done.purchase, Some(done.interaction), &reason)
                        .await
                    {
                        Ok(moved) => report.failed += usize::from(moved),
                        Err(e) => report.settle_errors.push((done.purchase, e)),
                    }
                }
                None => {}
            }
        }
        report.failed += self
            .repo
            .fail_abandoned(
                now - CLAIM_TIMEOUT,
                "interrupted while its TOP_UP was being created; check the meter's interactions, then re-deliver or refund",
            )
            .await? as usize;
        Ok(report)
    }

    /// Creates the order's purchase and its TOP_UP. `None` when another worker got there first.
    async fn open_one(
        &self,
        top_up: CompletedTopUp,
    ) -> Result<Option<PurchaseStatus>, DomainError> {
        let opening = match (&top_up.pricing, top_up.grid_currency) {
            (None, _) | (_, None) => {
                Opening::Unpriceable("the meter is not installed on a grid".into())
            }
            (Some(_), Some(grid)) if grid != top_up.order_currency => {
                Opening::Unpriceable(format!(
                    "the order is in {} but the grid's tariffs are in {grid}",
                    top_up.order_currency
                ))
            }
            (Some(facts), Some(_)) => match price(top_up.amount_minor, facts) {
                Ok(priced) => Opening::Priced(priced),
                Err(e) => Opening::Unpriceable(e.to_string()),
            },
        };
        let Some(purchase) = self.repo.open(top_up.order_id, opening).await? else {
            return Ok(None);
        };
        if purchase.status == PurchaseStatus::Failed {
            return Ok(Some(PurchaseStatus::Failed));
        }
        Ok(Some(self.send(&purchase).await?))
    }

    /// Creates the TOP_UP of a claimed purchase, or fails the purchase with the reason.
    async fn send(&self, purchase: &Purchase) -> Result<PurchaseStatus, DomainError> {
        match self
            .sender
            .top_up(purchase.meter_id, purchase.energy_wh)
            .await
        {
            Ok(interaction) => {
                self.repo.attach(purchase.id, interaction).await?;
                Ok(PurchaseStatus::Pending)
            }
            // The database itself failing is not the purchase's fault: the claim runs out and
            // the purchase shows as interrupted.
            Err(DomainError::Internal(m)) => Err(DomainError::Internal(m)),
            Err(e) => {
                let reason = format!("the TOP_UP could not be created: {}", describe(&e));
                self.repo.fail(purchase.id, None, &reason).await?;
                Ok(PurchaseStatus::Failed)
            }
        }
    }

    pub async fn list(
        &self,
        who: &Principal,
        filter: PurchaseFilter,
        page: PageRequest,
    ) -> Result<Page<Purchase>, DomainError> {
        Self::staff(who, Permission::MoneyRead)?;
        let rows = self.repo.list(who.scope(), filter, page).await?;
        Ok(Page::from_rows(rows, page, |p| p.id.get()))
    }

    pub async fn get(&self, who: &Principal, id: PurchaseId) -> Result<Purchase, DomainError> {
        if who.kind != kernel::AccountKind::Member {
            return Err(DomainError::NotFound("purchase"));
        }
        who.require(Permission::MoneyRead)?;
        self.repo
            .get(who.scope(), id)
            .await?
            .ok_or(DomainError::NotFound("purchase"))
    }

    /// A FAILED purchase gets a new TOP_UP with a fresh token and the same energy. 409 unless
    /// it is FAILED. Needs `token_redeliver`.
    pub async fn redeliver(
        &self,
        who: &Principal,
        id: PurchaseId,
    ) -> Result<Purchase, DomainError> {
        let current = self.get(who, id).await?;
        who.require(Permission::TokenRedeliver)?;
        if current.energy_wh <= 0 {
            return Err(DomainError::Conflict(
                "this purchase was never priced (no tariff): refund it".into(),
            ));
        }
        if !current.status.may_become(PurchaseStatus::Pending)
            || !self.repo.claim_redelivery(id, Actor::of(who)).await?
        {
            return Err(DomainError::Conflict(format!(
                "only a FAILED purchase can be re-delivered; this one is {}",
                current.status.as_str()
            )));
        }
        self.send(&current).await?;
        self.get(who, id).await
    }

    /// A FAILED purchase's money goes back to the payer (reversing posting). 409 unless FAILED.
    /// Needs `refund_manage`.
    pub async fn refund(&self, who: &Principal, id: PurchaseId) -> Result<Purchase, DomainError> {
        let current = self.get(who, id).await?;
        who.require(Permission::RefundManage)?;
        if !current.status.may_become(PurchaseStatus::Refunded) {
            return Err(DomainError::Conflict(format!(
                "only a FAILED purchase can be refunded; this one is {}",
                current.status.as_str()
            )));
        }
        self.repo.refund(id, Actor::of(who)).await?;
        self.get(who, id).await
    }

    /// Sets the meter's own tariff (minor units per kWh, above zero) or clears it (`None`: the
    /// grid's HPS/FS tariff applies). Needs `grid_manage`.
    pub async fn set_meter_tariff(
        &self,
        who: &Principal,
        meter: MeterId,
        tariff_minor_per_kwh: Option<i64>,
    ) -> Result<(), DomainError> {
        Self::staff(who, Permission::GridManage)?;
        kernel::Validator::default()
            .check(
                tariff_minor_per_kwh.is_none_or(|t| t > 0),
                "tariff_minor_per_kwh",
                "must be above zero (or null to use the grid's tariff)",
            )
            .finish()?;
        if !self
            .repo
            .set_meter_tariff(who.scope(), meter, tariff_minor_per_kwh, Actor::of(who))
            .await?
        {
            return Err(DomainError::NotFound("meter"));
        }
        Ok(())
    }

    fn staff(who: &Principal, p: Permission) -> Result<(), DomainError> {
        who.require(p)?;
        if who.kind != kernel::AccountKind::Member {
            return Err(DomainError::Forbidden("purchases are for staff".into()));
        }
        Ok(())
    }
}

fn describe(e: &DomainError) -> String {
    match e {
        DomainError::Validation(errors) => errors
            .iter()
            .map(|f| format!("{}: {}", f.field, f.message))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn facts(own: Option<i64>, kind: MeterType) -> PricingFacts {
        PricingFacts {
            meter_tariff_minor_per_kwh: own,
            meter_type: kind,
            grid_hps_tariff_minor_per_kwh: 25_000,
            grid_fs_tariff_minor_per_kwh: 30_000,
        }
    }

    #[test]
    fn the_meter_tariff_wins_else_the_grid_tariff_by_meter_type() {
        assert_eq!(
            tariff_for(&facts(Some(20_000), MeterType::Fs)).unwrap(),
            Tariff {
                minor_per_kwh: 20_000,
                source: TariffSource::Meter
            }
        );
        assert_eq!(
            tariff_for(&facts(None, MeterType::Hps)).unwrap().source,
            TariffSource::GridHps
        );
        assert_eq!(
            tariff_for(&facts(None, MeterType::Fs))
                .unwrap()
                .minor_per_kwh,
            30_000
        );
    }

    #[test]
    fn a_zero_or_missing_tariff_is_an_error_not_a_division_by_zero() {
        assert_eq!(
            tariff_for(&facts(Some(0), MeterType::Hps)),
            Err(PricingError::NoTariff("meter"))
        );
        let mut f = facts(None, MeterType::Fs);
        f.grid_fs_tariff_minor_per_kwh = 0;
        assert_eq!(price(1000, &f), Err(PricingError::NoTariff("grid FS")));
        assert!(energy_for(1000, 0).is_err());
        assert_eq!(energy_for(0, 100), Err(PricingError::NothingPaid));
        assert_eq!(energy_for(-5, 100), Err(PricingError::NothingPaid));
    }

    #[test]
    fn energy_is_rounded_up_to_a_tenth_of_a_kwh() {
        // ₦1,000 at ₦250/kWh = exactly 4 kWh.
        assert_eq!(energy_for(100_000, 25_000).unwrap(), 4_000);
        // ₦1,000 at ₦300/kWh = 3.333… kWh → 3.4 kWh.
        assert_eq!(energy_for(100_000, 30_000).unwrap(), 3_400);
        // 1 kobo buys the smallest step.
        assert_eq!(energy_for(1, 30_000).unwrap(), 100);
        assert_eq!(energy_for(i64::MAX, 1), Err(PricingError::TooLarge));
    }

    #[test]
    fn transitions_are_exhaustive_and_final_states_stay() {
        use PurchaseStatus as S;
        for from in S::ALL {
            for to in S::ALL {
                let allowed = matches!(
                    (from, to),
                    (S::Pending, S::Delivered)
                        | (S::Pending, S::Failed)
                        | (S::Failed, S::Pending)
                        | (S::Failed, S::Refunded)
                );
                assert_eq!(from.may_become(to), allowed, "{from:?} → {to:?}");
            }
            assert_eq!(S::parse(from.as_str()), Some(from));
        }
    }

    #[test]
    fn interaction_outcomes_map_to_purchase_outcomes() {
        assert_eq!(
            outcome_of(InteractionStatus::Successful),
            Some(PurchaseStatus::Delivered)
        );
        for s in [
            InteractionStatus::Failed,
            InteractionStatus::Aborted,
            InteractionStatus::Expired,
        ] {
            assert_eq!(outcome_of(s), Some(PurchaseStatus::Failed));
        }
        for s in [
            InteractionStatus::Queued,
            InteractionStatus::Suspended,
            InteractionStatus::Processing,
        ] {
            assert_eq!(outcome_of(s), None);
        }
    }

    fn completed(order: i64) -> CompletedTopUp {
        let ngn = Currency::parse("NGN").unwrap();
        CompletedTopUp {
            order_id: OrderId(order),
            meter_id: MeterId(9),
            amount_minor: 100_000,
            order_currency: ngn,
            grid_currency: Some(ngn),
            pricing: Some(facts(None, MeterType::Hps)),
        }
    }

    fn opened(id: i64, status: PurchaseStatus, energy_wh: i64) -> Purchase {
        let ngn = Currency::parse("NGN").unwrap();
        let now = Utc::now();
        Purchase {
            id: PurchaseId(id),
            organization_id: OrganizationId(1),
            order_id: OrderId(id),
            meter_id: MeterId(9),
            grid_id: Some(GridId(1)),
            amount_minor: MinorUnits(100_000),
            currency: ngn,
            energy_wh,
            tariff_minor_per_kwh: Some(25_000),
            tariff_source: Some(TariffSource::GridHps),
            status,
            failure_reason: None,
            interaction_id: None,
            attempts: 0,
            payer_wallet_id: WalletId(1),
            meter_wallet_id: WalletId(2),
            refund_order_id: None,
            created_at: now,
            updated_at: now,
        }
    }

    fn quiet(repo: &mut MockPurchaseRepo) {
        repo.expect_finished_deliveries().returning(|_| Ok(vec![]));
        repo.expect_fail_abandoned().returning(|_, _| Ok(0));
    }

    #[tokio::test]
    async fn a_delivery_that_cannot_be_recorded_does_not_stall_the_others() {
        let mut repo = MockPurchaseRepo::new();
        repo.expect_completed_top_ups_without_purchase()
            .returning(|_| Ok(vec![]));
        repo.expect_finished_deliveries().returning(|_| {
            Ok([1, 2]
                .into_iter()
                .map(|id| FinishedDelivery {
                    purchase: PurchaseId(id),
                    interaction: InteractionId(100 + id),
                    status: InteractionStatus::Successful,
                    reason: None,
                })
                .collect())
        });
        repo.expect_deliver().times(2).returning(|id, _| {
            if id.get() == 1 {
                Err(DomainError::Conflict("insufficient funds".into()))
            } else {
                Ok(true)
            }
        });
        repo.expect_fail_abandoned()
            .times(1)
            .returning(|_, _| Ok(0));
        let service = PurchaseService::new(Arc::new(repo), Arc::new(MockTopUpSender::new()));
        let report = service.run_once(Utc::now()).await.unwrap();
        assert_eq!(report.delivered, 1);
        assert_eq!(report.settle_errors.len(), 1);
        assert_eq!(report.settle_errors[0].0, PurchaseId(1));
    }

    #[tokio::test]
    async fn an_order_another_worker_opened_sends_nothing() {
        let mut repo = MockPurchaseRepo::new();
        repo.expect_completed_top_ups_without_purchase()
            .returning(|_| Ok(vec![completed(1)]));
        repo.expect_open().returning(|_, _| Ok(None));
        quiet(&mut repo);
        let mut sender = MockTopUpSender::new();
        sender.expect_top_up().never();
        let service = PurchaseService::new(Arc::new(repo), Arc::new(sender));
        let report = service.run_once(Utc::now()).await.unwrap();
        assert_eq!(report.opened, 0);
    }

    #[tokio::test]
    async fn a_priced_order_sends_its_energy_and_a_token_failure_fails_it_with_the_reason() {
        let mut repo = MockPurchaseRepo::new();
        repo.expect_completed_top_ups_without_purchase()
            .returning(|_| Ok(vec![completed(1), completed(2)]));
        repo.expect_open()
            .withf(|_, o| {
                *o == Opening::Priced(Priced {
                    energy_wh: 4_000,
                    tariff: Tariff {
                        minor_per_kwh: 25_000,
                        source: TariffSource::GridHps,
                    },
                })
            })
            .returning(|order, _| Ok(Some(opened(order.get(), PurchaseStatus::Pending, 4_000))));
        quiet(&mut repo);
        repo.expect_attach()
            .withf(|id, i| id.get() == 1 && i.get() == 77)
            .times(1)
            .returning(|_, _| Ok(()));
        repo.expect_fail()
            .withf(|id, i, reason| {
                id.get() == 2 && i.is_none() && reason.contains("STS generator down")
            })
            .times(1)
            .returning(|_, _, _| Ok(true));
        let mut sender = MockTopUpSender::new();
        sender
            .expect_top_up()
            .withf(|_, wh| *wh == 4_000)
            .times(2)
            .returning({
                let mut calls = 0;
                move |_, _| {
                    calls += 1;
                    if calls == 1 {
                        Ok(InteractionId(77))
                    } else {
                        Err(DomainError::Unavailable("STS generator down".into()))
                    }
                }
            });
        let service = PurchaseService::new(Arc::new(repo), Arc::new(sender));
        let report = service.run_once(Utc::now()).await.unwrap();
        assert_eq!((report.opened, report.failed), (2, 1));
    }

    #[tokio::test]
    async fn an_unpriceable_order_is_failed_at_once_without_a_top_up() {
        let mut repo = MockPurchaseRepo::new();
        repo.expect_completed_top_ups_without_purchase()
            .returning(|_| {
                let mut t = completed(3);
                t.order_currency = Currency::parse("USD").unwrap();
                Ok(vec![t])
            });
        repo.expect_open()
            .withf(|_, o| matches!(o, Opening::Unpriceable(r) if r.contains("USD")))
            .returning(|order, _| Ok(Some(opened(order.get(), PurchaseStatus::Failed, 0))));
        quiet(&mut repo);
        let mut sender = MockTopUpSender::new();
        sender.expect_top_up().never();
        let service = PurchaseService::new(Arc::new(repo), Arc::new(sender));
        let report = service.run_once(Utc::now()).await.unwrap();
        assert_eq!((report.opened, report.failed), (1, 1));
    }

    proptest! {
        #[test]
        fn never_less_than_paid_for_and_at_most_one_step_more(
            amount in 1i64..1_000_000_000_000, tariff in 1i64..100_000_000
        ) {
            let wh = energy_for(amount, tariff).unwrap();
            prop_assert_eq!(wh % ENERGY_STEP_WH, 0);
            // value of the energy (minor units × 1000 to stay exact) covers the payment...
            let value_milli = i128::from(wh) * i128::from(tariff);
            let paid_milli = i128::from(amount) * 1000;
            prop_assert!(value_milli >= paid_milli);
            // ...and one step less would not.
            prop_assert!(i128::from(wh - ENERGY_STEP_WH) * i128::from(tariff) < paid_milli);
        }

        #[test]
        fn more_money_never_buys_less_energy(
            a in 1i64..1_000_000_000, extra in 0i64..1_000_000, tariff in 1i64..10_000_000
        ) {
            prop_assert!(energy_for(a + extra, tariff).unwrap() >= energy_for(a, tariff).unwrap());
        }

        #[test]
        fn a_higher_tariff_never_buys_more_energy(
            amount in 1i64..1_000_000_000, t in 1i64..10_000_000, extra in 0i64..1_000_000
        ) {
            prop_assert!(energy_for(amount, t + extra).unwrap() <= energy_for(amount, t).unwrap());
        }
    }
}
