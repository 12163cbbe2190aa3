//! Payouts to grid owners: what a grid earned in a month, less rentals and fees (the
//! predecessor's §2.8 formula), approved by finance and paid by a provider transfer.
//!
//! * [`compute`] is pure and exact: integer minor units; every rental and fee is rounded once,
//!   half away from zero, to the minor unit; the payout is revenue minus those rounded parts.
//!   A month without top-ups is a payout of zero revenue (not an error); with rentals it is
//!   negative (the owner owes), and a payout that is not above zero cannot be paid.
//! * Statuses: WAITING_FOR_APPROVAL → APPROVED → PROCESSING (transfer sent) → PAID or FAILED; a
//!   FAILED payout may be paid again (a new transfer reference); a transfer the provider never
//!   received puts it back to APPROVED with the same reference, so a retry cannot pay twice.
//!   [`PayoutStatus::after`] is the whole machine; the store applies it as compare-and-set.
//! * A transfer call without an answer (timeout, 5xx) may have paid: the payout stays PROCESSING
//!   with its money posted, and [`PayoutService::read_back_transfers`] (periodic) or the provider's
//!   webhook settles it from what the provider reports for our reference. Only a reported failure,
//!   or no transfer with that reference after a grace period, gives the money back.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use kernel::{
    Currency, DomainError, GridId, OrganizationId, Page, PageRequest, PayoutId, Permission,
    Principal, TenantScope,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::gateway::{GatewayError, PaymentGateway, ProviderStatus, TransferRequest};
use crate::purchase::Actor;
use crate::vocab::Money;

/// Basis points (1/100 of a percent).
pub type Bps = i64;

/// The predecessor's fee rates: grid support 10 % and insurance 2 % of energy revenue, payment
/// processing 2 % of total revenue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FeeRates {
    pub support_bps: Bps,
    pub insurance_bps: Bps,
    pub processing_bps: Bps,
}

impl Default for FeeRates {
    fn default() -> Self {
        FeeRates {
            support_bps: 1_000,
            insurance_bps: 200,
            processing_bps: 200,
        }
    }
}

/// Units of the grid's currency per unit of the rental currency, to six decimals (held as
/// millionths, so no float touches money). Minor units convert at the same rate: both
/// currencies are taken to have the same minor-unit exponent (USD and NGN both have 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ExchangeRate {
    micros: i64,
}

impl ExchangeRate {
    pub const ONE: ExchangeRate = ExchangeRate { micros: 1_000_000 };

    /// A positive decimal with at most six decimals, e.g. `1530.5`.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let bad = || {
            DomainError::invalid(
                "exchange_rate",
                "must be a positive decimal with at most 6 decimals, e.g. 1530.5",
            )
        };
        let s = s.trim();
        let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
        if whole.is_empty()
            || frac.len() > 6
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let whole: i64 = whole.parse().map_err(|_| bad())?;
        let frac_micros: i64 = format!("{frac:0<6}").parse().map_err(|_| bad())?;
        let micros = whole
            .checked_mul(1_000_000)
            .and_then(|w| w.checked_add(frac_micros))
            .ok_or_else(bad)?;
        if micros <= 0 {
            return Err(bad());
        }
        Ok(ExchangeRate { micros })
    }

    pub fn micros(self) -> i64 {
        self.micros
    }
}

impl TryFrom<String> for ExchangeRate {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        ExchangeRate::parse(&s).map_err(|e| e.to_string())
    }
}

impl From<ExchangeRate> for String {
    fn from(r: ExchangeRate) -> String {
        let whole = r.micros / 1_000_000;
        let frac = r.micros % 1_000_000;
        if frac == 0 {
            return whole.to_string();
        }
        let frac = format!("{frac:06}");
        format!("{whole}.{}", frac.trim_end_matches('0'))
    }
}

/// A grid's capacity rental, per month, in the rental currency's minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RentalTerms {
    /// Per kWp of installed PV per month.
    pub pv_minor_per_kwp_month: i64,
    /// Per kWh of installed storage per month.
    pub storage_minor_per_kwh_month: i64,
    /// The currency the rental is priced in (often USD while revenue is NGN).
    pub currency: Currency,
}

/// Everything the formula needs for one grid and month.
#[derive(Debug, Clone, PartialEq)]
pub struct PayoutInputs {
    /// The grid's currency: revenue, fees and the payout are in it.
    pub currency: Currency,
    /// Completed energy top-ups less their refunds.
    pub energy_topup_revenue_minor: i64,
    /// Completed connection payments less connection refunds.
    pub connection_fee_revenue_minor: i64,
    pub pv_capacity_wp: i64,
    pub storage_capacity_wh: i64,
    pub rental: RentalTerms,
    /// Needed when the rental currency differs from the grid's and a rental is due.
    pub exchange_rate: Option<ExchangeRate>,
    pub fees: FeeRates,
}

/// The formula's every figure, stored with the payout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PayoutBreakdown {
    pub currency: Currency,
    pub energy_topup_revenue_minor: i64,
    pub connection_fee_revenue_minor: i64,
    pub total_revenue_minor: i64,
    pub pv_capacity_wp: i64,
    pub storage_capacity_wh: i64,
    pub rental: RentalTerms,
    /// The rate applied to the rental (1 when it is in the grid's currency), as a decimal.
    #[schema(value_type = String, example = "1530.5")]
    pub exchange_rate: ExchangeRate,
    pub pv_rental_minor: i64,
    pub storage_rental_minor: i64,
    pub total_rental_minor: i64,
    pub fees: FeeRates,
    pub support_fee_minor: i64,
    pub insurance_fee_minor: i64,
    pub processing_fee_minor: i64,
    /// Revenue − rentals − fees; negative when the owner owes.
    pub payout_minor: i64,
}

/// `n / d` rounded half away from zero (`d > 0`).
fn div_round(n: i128, d: i128) -> i128 {
    let q = n / d;
    let r = n % d;
    if 2 * r.abs() >= d { q + n.signum() } else { q }
}

fn to_i64(v: i128) -> Result<i64, DomainError> {
    i64::try_from(v).map_err(|_| DomainError::Conflict("the payout figures overflow".into()))
}

/// `amount × bps / 10 000`, rounded half away from zero.
pub fn share(amount_minor: i64, bps: Bps) -> Result<i64, DomainError> {
    to_i64(div_round(
        i128::from(amount_minor) * i128::from(bps),
        10_000,
    ))
}

/// A month's rental of `capacity` (W or Wh) at `minor_per_k` (per kW or kWh) and `rate`.
fn rental(capacity: i64, minor_per_k: i64, rate: ExchangeRate) -> Result<i64, DomainError> {
    to_i64(div_round(
        i128::from(capacity) * i128::from(minor_per_k) * i128::from(rate.micros),
        1_000 * 1_000_000,
    ))
}

/// The payout for one grid and month (predecessor §2.8, with installed capacity standing in for
/// the daily battery and MPPT uptime the predecessor read from its time-series store).
pub fn compute(i: &PayoutInputs) -> Result<PayoutBreakdown, DomainError> {
    let rental_due =
        i.rental.pv_minor_per_kwp_month != 0 || i.rental.storage_minor_per_kwh_month != 0;
    let rate = if i.rental.currency == i.currency {
        ExchangeRate::ONE
    } else {
        match i.exchange_rate {
            Some(r) => r,
            None if !rental_due => ExchangeRate::ONE,
            None => {
                return Err(DomainError::invalid(
                    "exchange_rate",
                    &format!(
                        "is required: the rental is priced in {} and the grid earns in {}",
                        i.rental.currency, i.currency
                    ),
                ));
            }
        }
    };
    let pv = rental(i.pv_capacity_wp, i.rental.pv_minor_per_kwp_month, rate)?;
    let storage = rental(
        i.storage_capacity_wh,
        i.rental.storage_minor_per_kwh_month,
        rate,
    )?;
    let total_revenue = to_i64(
        i128::from(i.energy_topup_revenue_minor) + i128::from(i.connection_fee_revenue_minor),
    )?;
    let support = share(i.energy_topup_revenue_minor, i.fees.support_bps)?;
    let insurance = share(i.energy_topup_revenue_minor, i.fees.insurance_bps)?;
    let processing = share(total_revenue, i.fees.processing_bps)?;
    let total_rental = to_i64(i128::from(pv) + i128::from(storage))?;
    let payout = to_i64(
        i128::from(total_revenue)
            - i128::from(total_rental)
            - i128::from(support)
            - i128::from(insurance)
            - i128::from(processing),
    )?;
    Ok(PayoutBreakdown {
        currency: i.currency,
        energy_topup_revenue_minor: i.energy_topup_revenue_minor,
        connection_fee_revenue_minor: i.connection_fee_revenue_minor,
        total_revenue_minor: total_revenue,
        pv_capacity_wp: i.pv_capacity_wp,
        storage_capacity_wh: i.storage_capacity_wh,
        rental: i.rental,
        exchange_rate: rate,
        pv_rental_minor: pv,
        storage_rental_minor: storage,
        total_rental_minor: total_rental,
        fees: i.fees,
        support_fee_minor: support,
        insurance_fee_minor: insurance,
        processing_fee_minor: processing,
        payout_minor: payout,
    })
}

/// A calendar month in the grid's timezone, as UTC instants `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Period {
    /// `YYYY-MM`.
    #[schema(value_type = String, example = "2026-10")]
    pub month: Month,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// A calendar month (`YYYY-MM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Month {
    pub year: i32,
    pub month: u32,
}

impl Month {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let bad = || DomainError::invalid("month", "must be a month as YYYY-MM, e.g. 2026-10");
        let (y, m) = s.trim().split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 {
            return Err(bad());
        }
        let year: i32 = y.parse().map_err(|_| bad())?;
        let month: u32 = m.parse().map_err(|_| bad())?;
        NaiveDate::from_ymd_opt(year, month, 1).ok_or_else(bad)?;
        Ok(Month { year, month })
    }

    fn next(self) -> Month {
        if self.month == 12 {
            Month {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Month {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// The month containing `at` in `tz`.
    pub fn containing(at: DateTime<Utc>, tz: chrono_tz::Tz) -> Month {
        let local = at.with_timezone(&tz);
        Month {
            year: local.year(),
            month: local.month(),
        }
    }

    /// Its bounds in `tz` (an IANA name; midnight that does not exist locally moves forward).
    pub fn period(self, tz: chrono_tz::Tz) -> Result<Period, DomainError> {
        let start_of = |m: Month| -> Result<DateTime<Utc>, DomainError> {
            let day = NaiveDate::from_ymd_opt(m.year, m.month, 1)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .ok_or_else(|| DomainError::invalid("month", "is out of range"))?;
            let local = tz.from_local_datetime(&day);
            local
                .earliest()
                .or_else(|| {
                    tz.from_local_datetime(&(day + chrono::TimeDelta::hours(1)))
                        .earliest()
                })
                .map(|t| t.with_timezone(&Utc))
                .ok_or_else(|| {
                    DomainError::invalid("month", "has no midnight in the grid's timezone")
                })
        };
        Ok(Period {
            month: self,
            start: start_of(self)?,
            end: start_of(self.next())?,
        })
    }
}

impl TryFrom<String> for Month {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Month::parse(&s).map_err(|e| e.to_string())
    }
}

impl From<Month> for String {
    fn from(m: Month) -> String {
        format!("{:04}-{:02}", m.year, m.month)
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// `payouts.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PayoutStatus {
    WaitingForApproval,
    Approved,
    /// A transfer was sent; its outcome is awaited (the provider's webhook or answer).
    Processing,
    Paid,
    Failed,
}

/// What happens to a payout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayoutEvent {
    Approve,
    /// We are about to send a transfer (claimed before the provider is called).
    StartTransfer,
    TransferSucceeded,
    TransferFailed,
    /// The provider has no such transfer (it refused the call as not found, or read back by our
    /// reference after the grace period): no transfer was made.
    TransferNotSent,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a payout that is {from} cannot {event:?}")]
pub struct IllegalPayoutTransition {
    pub from: &'static str,
    pub event: PayoutEvent,
}

impl PayoutStatus {
    pub const ALL: [PayoutStatus; 5] = [
        PayoutStatus::WaitingForApproval,
        PayoutStatus::Approved,
        PayoutStatus::Processing,
        PayoutStatus::Paid,
        PayoutStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PayoutStatus::WaitingForApproval => "WAITING_FOR_APPROVAL",
            PayoutStatus::Approved => "APPROVED",
            PayoutStatus::Processing => "PROCESSING",
            PayoutStatus::Paid => "PAID",
            PayoutStatus::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// The status after `event`, or why it cannot happen.
    pub fn after(self, event: PayoutEvent) -> Result<PayoutStatus, IllegalPayoutTransition> {
        use PayoutEvent as E;
        use PayoutStatus as S;
        match (self, event) {
            (S::WaitingForApproval, E::Approve) => Ok(S::Approved),
            (S::Approved | S::Failed, E::StartTransfer) => Ok(S::Processing),
            (S::Processing, E::TransferSucceeded) => Ok(S::Paid),
            (S::Processing, E::TransferFailed) => Ok(S::Failed),
            (S::Processing, E::TransferNotSent) => Ok(S::Approved),
            (
                S::WaitingForApproval,
                E::StartTransfer | E::TransferSucceeded | E::TransferFailed | E::TransferNotSent,
            )
            | (
                S::Approved,
                E::Approve | E::TransferSucceeded | E::TransferFailed | E::TransferNotSent,
            )
            | (S::Processing, E::Approve | E::StartTransfer)
            | (S::Paid, _)
            | (
                S::Failed,
                E::Approve | E::TransferSucceeded | E::TransferFailed | E::TransferNotSent,
            ) => Err(IllegalPayoutTransition {
                from: self.as_str(),
                event,
            }),
        }
    }
}

/// Where the money goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BankAccount {
    /// The provider's bank code (e.g. `044`).
    pub bank_code: String,
    pub account_number: String,
    pub account_name: Option<String>,
}

impl BankAccount {
    pub fn validate(&self) -> Result<(), DomainError> {
        let mut v = kernel::Validator::default();
        let code = self.bank_code.trim();
        v.check(
            !code.is_empty() && code.len() <= 16 && code.bytes().all(|b| b.is_ascii_alphanumeric()),
            "bank_code",
            "must be the bank's code (letters and digits, at most 16)",
        );
        let n = self.account_number.trim();
        v.check(
            (6..=20).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit()),
            "account_number",
            "must be 6 to 20 digits",
        );
        v.finish()
    }
}

/// A payout as finance sees it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Payout {
    pub id: PayoutId,
    pub organization_id: OrganizationId,
    pub grid_id: GridId,
    pub period: Period,
    pub currency: Currency,
    /// What the formula gives (may be negative).
    pub proposed_amount_minor: i64,
    /// What finance approved to pay.
    pub approved_amount_minor: Option<i64>,
    pub status: PayoutStatus,
    pub breakdown: PayoutBreakdown,
    pub bank_account: Option<BankAccount>,
    pub approved_by_account_id: Option<kernel::AccountId>,
    pub approved_at: Option<DateTime<Utc>>,
    /// Our reference of the current transfer (the provider's idempotency key).
    pub transfer_reference: Option<String>,
    /// The provider's transfer id.
    pub provider_transfer_id: Option<String>,
    pub failure_reason: Option<String>,
    pub paid_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PayoutFilter {
    pub grid_id: Option<GridId>,
    pub status: Option<PayoutStatus>,
    pub month: Option<Month>,
}

/// What a grid brings to the formula besides revenue.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct GridPayoutTerms {
    pub grid_id: GridId,
    pub organization_id: OrganizationId,
    pub timezone: String,
    pub currency: Currency,
    pub pv_capacity_wp: i64,
    pub storage_capacity_wh: i64,
    pub rental: RentalTerms,
}

/// Revenue of a grid in a period, in the grid's currency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Revenue {
    pub energy_topup_minor: i64,
    pub connection_fee_minor: i64,
}

/// How a transfer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferOutcome {
    Succeeded,
    Failed(String),
    NotSent(String),
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait PayoutRepo: Send + Sync {
    async fn grid_terms(
        &self,
        scope: TenantScope,
        grid: GridId,
    ) -> Result<Option<GridPayoutTerms>, DomainError>;
    /// Sets the grid's monthly capacity rental (audited); `None` when the grid is not visible.
    async fn set_rental(
        &self,
        scope: TenantScope,
        grid: GridId,
        pv_minor_per_kwp_month: i64,
        storage_minor_per_kwh_month: i64,
        rental_currency: Option<Currency>,
        by: Actor,
    ) -> Result<Option<GridPayoutTerms>, DomainError>;
    async fn revenue(
        &self,
        grid: GridId,
        currency: Currency,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Revenue, DomainError>;
    /// Saves the draft of (grid, month): created, or refreshed while still WAITING_FOR_APPROVAL.
    /// `Conflict` when that month's payout has moved on. Answers the payout and whether it was
    /// created.
    async fn save_draft(
        &self,
        terms: &GridPayoutTerms,
        period: Period,
        breakdown: &PayoutBreakdown,
        by: Actor,
    ) -> Result<(Payout, bool), DomainError>;
    async fn list(
        &self,
        scope: TenantScope,
        filter: PayoutFilter,
        page: PageRequest,
    ) -> Result<Vec<Payout>, DomainError>;
    async fn get(&self, scope: TenantScope, id: PayoutId) -> Result<Option<Payout>, DomainError>;
    /// WAITING_FOR_APPROVAL → APPROVED with the amount and bank account; false when it was not
    /// waiting.
    async fn approve(
        &self,
        id: PayoutId,
        amount_minor: i64,
        bank: &BankAccount,
        by: Actor,
    ) -> Result<bool, DomainError>;
    /// APPROVED or FAILED → PROCESSING; answers the transfer reference to use (kept from an
    /// unsent attempt, new after a failure), or `None` when the payout was not payable. Posts the
    /// payout's money from the organization's wallet to [`PAYOUT_PROVIDER`]'s system wallet in
    /// the same transaction: `Conflict` (nothing changes) when the organization's wallet cannot
    /// cover it.
    async fn start_transfer(&self, id: PayoutId, by: Actor) -> Result<Option<String>, DomainError>;
    /// PROCESSING payouts, least recently changed first (their transfers' outcomes are read
    /// back by [`PayoutService::read_back_transfers`]).
    async fn processing(&self, limit: i64) -> Result<Vec<Payout>, DomainError>;
    /// The PROCESSING payout whose transfer the provider accepted as `provider_id`, else the
    /// one whose transfer has our `reference`.
    async fn processing_transfer<'a>(
        &self,
        provider_id: &str,
        reference: Option<&'a str>,
    ) -> Result<Option<Payout>, DomainError>;
    /// Records the provider's id of the transfer `reference` (still PROCESSING).
    async fn transfer_accepted(
        &self,
        reference: &str,
        provider_id: &str,
    ) -> Result<(), DomainError>;
    /// PROCESSING → PAID, FAILED or (not sent) APPROVED for the transfer `reference`; FAILED and
    /// APPROVED give the posted money back to the organization's wallet in the same transaction
    /// (PAID leaves the ledger as it is). Answers
    /// the payout when it moved, `None` when no PROCESSING payout has that reference (a repeated
    /// or stale outcome: nothing changes).
    async fn settle_transfer(
        &self,
        reference: &str,
        provider_id: Option<String>,
        outcome: TransferOutcome,
    ) -> Result<Option<PayoutId>, DomainError>;
}

/// What a transfer webhook did (see [`PayoutService::on_transfer_webhook`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferWebhook {
    /// No PROCESSING payout has that transfer: not ours, or already settled.
    NoPayout,
    /// The provider does not know the transfer (the periodic read-back decides later).
    UnknownAtProvider { payout: PayoutId },
    /// The payout is PAID (`succeeded`) or FAILED with its money back.
    Settled { payout: PayoutId, succeeded: bool },
    /// Another settlement got there first; nothing changed.
    AlreadySettled { payout: PayoutId },
}

/// PROCESSING payouts read back per pass (the oldest first; the rest wait for the next pass).
const READ_BACK_BATCH: i64 = 100;

/// What one [`PayoutService::read_back_transfers`] pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadBack {
    /// Payouts moved to PAID, FAILED or (never made) APPROVED.
    pub settled: usize,
    /// Still pending at the provider, or not found within the grace period.
    pub waiting: usize,
    /// Not read (the provider unavailable or its answer doubtful).
    pub errors: usize,
}

/// The provider payouts are transferred through: its system wallet receives a payout's money when
/// the transfer starts (and gives it back when the transfer fails or never reached it).
pub const PAYOUT_PROVIDER: &str = crate::checkout::FLUTTERWAVE;

#[derive(Clone)]
pub struct PayoutService {
    repo: Arc<dyn PayoutRepo>,
    gateway: Option<Arc<dyn PaymentGateway>>,
}

impl PayoutService {
    pub fn new(repo: Arc<dyn PayoutRepo>) -> Self {
        Self {
            repo,
            gateway: None,
        }
    }

    /// Enables paying (transfers through the provider).
    pub fn with_gateway(mut self, gateway: Arc<dyn PaymentGateway>) -> Self {
        self.gateway = Some(gateway);
        self
    }

    fn staff(who: &Principal, p: Permission) -> Result<(), DomainError> {
        who.require(p)?;
        if who.kind != kernel::AccountKind::Member {
            return Err(DomainError::Forbidden("payouts are for staff".into()));
        }
        Ok(())
    }

    /// Computes (or refreshes) the draft for a grid and month. Needs `payout_approve`.
    pub async fn draft(
        &self,
        who: &Principal,
        grid: GridId,
        month: Month,
        exchange_rate: Option<ExchangeRate>,
    ) -> Result<(Payout, bool), DomainError> {
        Self::staff(who, Permission::PayoutApprove)?;
        let terms = self
            .repo
            .grid_terms(who.scope(), grid)
            .await?
            .ok_or(DomainError::NotFound("grid"))?;
        let tz: chrono_tz::Tz = terms
            .timezone
            .parse()
            .map_err(|_| DomainError::Internal(format!("grid timezone {:?}", terms.timezone)))?;
        let period = month.period(tz)?;
        let revenue = self
            .repo
            .revenue(grid, terms.currency, period.start, period.end)
            .await?;
        let breakdown = compute(&PayoutInputs {
            currency: terms.currency,
            energy_topup_revenue_minor: revenue.energy_topup_minor,
            connection_fee_revenue_minor: revenue.connection_fee_minor,
            pv_capacity_wp: terms.pv_capacity_wp,
            storage_capacity_wh: terms.storage_capacity_wh,
            rental: terms.rental,
            exchange_rate,
            fees: FeeRates::default(),
        })?;
        self.repo
            .save_draft(&terms, period, &breakdown, Actor::of(who))
            .await
    }

    /// The grid's payout terms (capacity and rental). Needs `money_read`.
    pub async fn terms(
        &self,
        who: &Principal,
        grid: GridId,
    ) -> Result<GridPayoutTerms, DomainError> {
        Self::staff(who, Permission::MoneyRead)?;
        self.repo
            .grid_terms(who.scope(), grid)
            .await?
            .ok_or(DomainError::NotFound("grid"))
    }

    /// Sets the grid's monthly capacity rental (per kWp of PV and per kWh of storage, in
    /// `rental_currency`, default the grid's). Needs `payout_approve`.
    pub async fn set_rental(
        &self,
        who: &Principal,
        grid: GridId,
        pv_minor_per_kwp_month: i64,
        storage_minor_per_kwh_month: i64,
        rental_currency: Option<Currency>,
    ) -> Result<GridPayoutTerms, DomainError> {
        Self::staff(who, Permission::PayoutApprove)?;
        kernel::Validator::default()
            .check(
                pv_minor_per_kwp_month >= 0,
                "pv_rental_minor_per_kwp_month",
                "must not be negative",
            )
            .check(
                storage_minor_per_kwh_month >= 0,
                "storage_rental_minor_per_kwh_month",
                "must not be negative",
            )
            .finish()?;
        self.repo
            .set_rental(
                who.scope(),
                grid,
                pv_minor_per_kwp_month,
                storage_minor_per_kwh_month,
                rental_currency,
                Actor::of(who),
            )
            .await?
            .ok_or(DomainError::NotFound("grid"))
    }

    pub async fn list(
        &self,
        who: &Principal,
        filter: PayoutFilter,
        page: PageRequest,
    ) -> Result<Page<Payout>, DomainError> {
        Self::staff(who, Permission::MoneyRead)?;
        let rows = self.repo.list(who.scope(), filter, page).await?;
        Ok(Page::from_rows(rows, page, |p| p.id.get()))
    }

    pub async fn get(&self, who: &Principal, id: PayoutId) -> Result<Payout, DomainError> {
        if who.kind != kernel::AccountKind::Member {
            return Err(DomainError::NotFound("payout"));
        }
        who.require(Permission::MoneyRead)?;
        self.repo
            .get(who.scope(), id)
            .await?
            .ok_or(DomainError::NotFound("payout"))
    }

    /// Approves a waiting payout: the amount (default: the proposed one, which must then be
    /// above zero) and the bank account it goes to. Needs `payout_approve`.
    pub async fn approve(
        &self,
        who: &Principal,
        id: PayoutId,
        amount_minor: Option<i64>,
        bank: BankAccount,
    ) -> Result<Payout, DomainError> {
        let current = self.get(who, id).await?;
        who.require(Permission::PayoutApprove)?;
        let amount = amount_minor.unwrap_or(current.proposed_amount_minor);
        let mut v = kernel::Validator::default();
        v.check(
            amount > 0,
            "approved_amount_minor",
            "must be above zero (a payout that is not positive is not paid)",
        );
        v.finish()?;
        bank.validate()?;
        current
            .status
            .after(PayoutEvent::Approve)
            .map_err(|e| DomainError::Conflict(e.to_string()))?;
        if !self.repo.approve(id, amount, &bank, Actor::of(who)).await? {
            return Err(DomainError::Conflict(
                "the payout changed meanwhile; reload it".into(),
            ));
        }
        self.get(who, id).await
    }

    /// Pays an APPROVED (or FAILED) payout by a provider transfer. The payout is claimed
    /// (PROCESSING) before the provider is called, so two requests cannot pay twice. Needs
    /// `payout_approve`; 503 when no provider is configured or it cannot be reached.
    pub async fn pay(&self, who: &Principal, id: PayoutId) -> Result<Payout, DomainError> {
        let current = self.get(who, id).await?;
        who.require(Permission::PayoutApprove)?;
        let gateway = self.gateway.as_ref().ok_or_else(|| {
            DomainError::Unavailable("no payment provider is configured for transfers".into())
        })?;
        current
            .status
            .after(PayoutEvent::StartTransfer)
            .map_err(|e| DomainError::Conflict(e.to_string()))?;
        let (Some(amount), Some(bank)) =
            (current.approved_amount_minor, current.bank_account.clone())
        else {
            return Err(DomainError::Conflict("the payout has no approval".into()));
        };
        let Some(reference) = self.repo.start_transfer(id, Actor::of(who)).await? else {
            return Err(DomainError::Conflict(
                "the payout changed meanwhile; reload it".into(),
            ));
        };
        let request = TransferRequest {
            reference: reference.clone(),
            amount: Money::new(amount, current.currency),
            bank_code: bank.bank_code.trim().to_owned(),
            account_number: bank.account_number.trim().to_owned(),
            narration: format!(
                "Payout {} for grid {}",
                current.period.month, current.grid_id
            ),
        };
        let sent = gateway
            .transfer(Some(current.organization_id), request)
            .await;
        match sent {
            Ok(result) => match result.status {
                ProviderStatus::Pending => {
                    self.repo
                        .transfer_accepted(&reference, &result.provider_id)
                        .await?;
                }
                ProviderStatus::Successful => {
                    self.repo
                        .settle_transfer(
                            &reference,
                            Some(result.provider_id.clone()),
                            TransferOutcome::Succeeded,
                        )
                        .await?;
                }
                ProviderStatus::Failed => {
                    self.repo
                        .settle_transfer(
                            &reference,
                            Some(result.provider_id.clone()),
                            TransferOutcome::Failed("the provider failed the transfer".into()),
                        )
                        .await?;
                }
            },
            Err(GatewayError::Refused(m)) => {
                self.repo
                    .settle_transfer(
                        &reference,
                        None,
                        TransferOutcome::Failed(format!("the provider refused: {m}")),
                    )
                    .await?;
            }
            // Refused as not found, or never reached the provider: nothing was made; the money
            // goes back at once and the same reference is used again.
            Err(e @ (GatewayError::NotFound | GatewayError::NotSent(_))) => {
                self.repo
                    .settle_transfer(&reference, None, TransferOutcome::NotSent(e.to_string()))
                    .await?;
                return Err(DomainError::Unavailable(e.to_string()));
            }
            // No answer (timeout, 5xx): the provider may have made the transfer. The payout stays
            // PROCESSING with its money posted until the outcome is read back by our reference.
            Err(GatewayError::Unavailable(m)) => {
                metrics::counter!("tiamat_payout_transfers_unanswered_total").increment(1);
                tracing::warn!(payout = id.get(), %reference, error = %m,
                    "payout transfer unanswered; its outcome will be read back");
                return Err(DomainError::Unavailable(format!(
                    "the provider did not answer ({m}); the transfer may have been made, so the \
                     payout stays PROCESSING until its outcome is read back"
                )));
            }
        }
        self.get(who, id).await
    }

    /// Settles PROCESSING payouts from what the provider reports for their transfers (read by
    /// the provider's id when it answered us, else by our reference): paid or failed as
    /// reported; a transfer the provider has no trace of, `grace` after it was started, was
    /// never made (APPROVED again, money back, same reference). Pending transfers and errors
    /// wait for the next pass. Every instance may run it: each settlement is a compare-and-set.
    pub async fn read_back_transfers(
        &self,
        now: DateTime<Utc>,
        grace: chrono::Duration,
    ) -> Result<ReadBack, DomainError> {
        let Some(gateway) = self.gateway.as_ref() else {
            return Ok(ReadBack::default());
        };
        let mut summary = ReadBack::default();
        for payout in self.repo.processing(READ_BACK_BATCH).await? {
            let Some(reference) = payout.transfer_reference.clone() else {
                continue;
            };
            let org = Some(payout.organization_id);
            let found = match &payout.provider_transfer_id {
                // Accepted by the provider: "not found" is not proof it was never made.
                Some(provider_id) => match gateway.verify_transfer(org, provider_id).await {
                    Ok(t) => Ok(Some(t)),
                    Err(GatewayError::NotFound) => Err(GatewayError::Unavailable(format!(
                        "the provider cannot find its transfer {provider_id}"
                    ))),
                    Err(e) => Err(e),
                },
                None => gateway.transfer_by_reference(org, &reference).await,
            };
            let outcome = match found {
                Ok(Some(t)) if t.reference != reference => Err(format!(
                    "the provider answered for reference {:?}",
                    t.reference
                )),
                Ok(Some(t)) => match t.status {
                    ProviderStatus::Successful => {
                        Ok(Some((Some(t.provider_id), TransferOutcome::Succeeded)))
                    }
                    ProviderStatus::Failed => Ok(Some((
                        Some(t.provider_id),
                        TransferOutcome::Failed(
                            t.failure_reason
                                .unwrap_or_else(|| "the provider failed the transfer".into()),
                        ),
                    ))),
                    ProviderStatus::Pending => {
                        if payout.provider_transfer_id.is_none() {
                            self.repo
                                .transfer_accepted(&reference, &t.provider_id)
                                .await?;
                        }
                        Ok(None)
                    }
                },
                Ok(None) if now - payout.updated_at >= grace => Ok(Some((
                    None,
                    TransferOutcome::NotSent(format!(
                        "the provider has no transfer {reference} {} minutes after it was started",
                        grace.num_minutes()
                    )),
                ))),
                Ok(None) => Ok(None),
                Err(e) => Err(e.to_string()),
            };
            match outcome {
                Ok(Some((provider_id, outcome))) => {
                    if self
                        .repo
                        .settle_transfer(&reference, provider_id, outcome)
                        .await?
                        .is_some()
                    {
                        summary.settled += 1;
                    }
                }
                Ok(None) => summary.waiting += 1,
                Err(error) => {
                    metrics::counter!("tiamat_payout_read_back_errors_total").increment(1);
                    tracing::warn!(payout = payout.id.get(), %reference, %error,
                        "reading a payout transfer back failed; retrying next pass");
                    summary.errors += 1;
                }
            }
        }
        Ok(summary)
    }

    /// The provider's word on a transfer (its webhook, e.g. Flutterwave `transfer.completed`):
    /// `reference` is ours. Idempotent: a repeated or stale outcome changes nothing.
    /// A transfer webhook (`transfer.completed`) names the provider's `transfer_id` and claims
    /// our `reference`: the PROCESSING payout it belongs to is found (by the transfer id it was
    /// accepted with, else by the reference), and the transfer is read back with that payout's
    /// organization's account (its own when it has one; the platform's otherwise), since that
    /// account made it. The read-back decides, never the webhook body, and it must name the
    /// payout's reference. Still pending at the provider → `Unavailable` (the event is retried).
    pub async fn on_transfer_webhook(
        &self,
        transfer_id: &str,
        reference: Option<&str>,
    ) -> Result<TransferWebhook, DomainError> {
        let Some(payout) = self
            .repo
            .processing_transfer(transfer_id, reference)
            .await?
        else {
            return Ok(TransferWebhook::NoPayout);
        };
        let gateway = self
            .gateway
            .as_ref()
            .ok_or_else(|| DomainError::Unavailable("no payment provider is configured".into()))?;
        let Some(ours) = payout.transfer_reference.clone() else {
            return Ok(TransferWebhook::NoPayout);
        };
        let transfer = match gateway
            .verify_transfer(Some(payout.organization_id), transfer_id)
            .await
        {
            Ok(t) => t,
            Err(GatewayError::NotFound) => {
                return Ok(TransferWebhook::UnknownAtProvider { payout: payout.id });
            }
            Err(e) => return Err(e.into()),
        };
        if transfer.reference != ours {
            return Err(DomainError::Conflict(format!(
                "transfer {transfer_id} has reference {:?}, payout {} expects {ours:?}",
                transfer.reference, payout.id
            )));
        }
        let outcome = match transfer.status {
            ProviderStatus::Successful => TransferOutcome::Succeeded,
            ProviderStatus::Failed => TransferOutcome::Failed(
                transfer
                    .failure_reason
                    .unwrap_or_else(|| "the provider failed the transfer".into()),
            ),
            ProviderStatus::Pending => {
                return Err(DomainError::Unavailable(format!(
                    "transfer {transfer_id} is still pending at the provider"
                )));
            }
        };
        let succeeded = outcome == TransferOutcome::Succeeded;
        Ok(
            match self
                .repo
                .settle_transfer(&ours, Some(transfer.provider_id), outcome)
                .await?
            {
                Some(id) => TransferWebhook::Settled {
                    payout: id,
                    succeeded,
                },
                None => TransferWebhook::AlreadySettled { payout: payout.id },
            },
        )
    }

    pub async fn transfer_outcome(
        &self,
        reference: &str,
        provider_id: Option<String>,
        succeeded: bool,
        reason: Option<String>,
    ) -> Result<Option<PayoutId>, DomainError> {
        let outcome = if succeeded {
            TransferOutcome::Succeeded
        } else {
            TransferOutcome::Failed(reason.unwrap_or_else(|| "the transfer failed".into()))
        };
        self.repo
            .settle_transfer(reference, provider_id, outcome)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::{MockPaymentGateway, TransferResult, VerifiedTransfer};

    fn ngn() -> Currency {
        Currency::parse("NGN").unwrap()
    }
    fn usd() -> Currency {
        Currency::parse("USD").unwrap()
    }

    fn inputs(energy: i64, connection: i64) -> PayoutInputs {
        PayoutInputs {
            currency: ngn(),
            energy_topup_revenue_minor: energy,
            connection_fee_revenue_minor: connection,
            pv_capacity_wp: 0,
            storage_capacity_wh: 0,
            rental: RentalTerms {
                pv_minor_per_kwp_month: 0,
                storage_minor_per_kwh_month: 0,
                currency: ngn(),
            },
            exchange_rate: None,
            fees: FeeRates::default(),
        }
    }

    #[test]
    fn a_month_without_top_ups_is_a_zero_payout() {
        let b = compute(&inputs(0, 0)).unwrap();
        assert_eq!(b.payout_minor, 0);
        assert_eq!(b.total_revenue_minor, 0);
        assert_eq!(b.support_fee_minor + b.processing_fee_minor, 0);
    }

    #[test]
    fn fees_follow_the_predecessor_rates() {
        // ₦100,000 energy, ₦20,000 connection fees.
        let b = compute(&inputs(10_000_000, 2_000_000)).unwrap();
        assert_eq!(b.total_revenue_minor, 12_000_000);
        assert_eq!(b.support_fee_minor, 1_000_000); // 10 % of energy
        assert_eq!(b.insurance_fee_minor, 200_000); // 2 % of energy
        assert_eq!(b.processing_fee_minor, 240_000); // 2 % of total
        assert_eq!(b.payout_minor, 12_000_000 - 1_000_000 - 200_000 - 240_000);
    }

    #[test]
    fn rentals_convert_at_the_exchange_rate_and_round_once() {
        let mut i = inputs(100_000_000, 0);
        i.pv_capacity_wp = 12_500; // 12.5 kWp
        i.storage_capacity_wh = 30_000; // 30 kWh
        i.rental = RentalTerms {
            pv_minor_per_kwp_month: 1_000,    // $10 per kWp
            storage_minor_per_kwh_month: 333, // $3.33 per kWh
            currency: usd(),
        };
        assert!(compute(&i).is_err(), "a USD rental needs a rate");
        i.exchange_rate = Some(ExchangeRate::parse("1530.5").unwrap());
        let b = compute(&i).unwrap();
        // 12.5 × $10 × 1530.5 = ₦191,312.50
        assert_eq!(b.pv_rental_minor, 19_131_250);
        // 30 × $3.33 × 1530.5 = ₦152,896.95
        assert_eq!(b.storage_rental_minor, 15_289_695);
        assert_eq!(
            b.payout_minor,
            100_000_000 - 19_131_250 - 15_289_695 - 10_000_000 - 2_000_000 - 2_000_000
        );
        // With no revenue the owner owes the rental: negative, not an error.
        i.energy_topup_revenue_minor = 0;
        assert_eq!(
            compute(&i).unwrap().payout_minor,
            -(19_131_250 + 15_289_695)
        );
    }

    #[test]
    fn shares_round_half_away_from_zero() {
        assert_eq!(share(5, 1_000).unwrap(), 1); // 0.5 → 1
        assert_eq!(share(4, 1_000).unwrap(), 0); // 0.4 → 0
        assert_eq!(share(-5, 1_000).unwrap(), -1);
        assert_eq!(share(15, 1_000).unwrap(), 2); // 1.5 → 2
    }

    #[test]
    fn exchange_rates_parse_exactly() {
        assert_eq!(
            ExchangeRate::parse("1530.5").unwrap().micros(),
            1_530_500_000
        );
        assert_eq!(ExchangeRate::parse("0.000001").unwrap().micros(), 1);
        for bad in ["", "-1", "0", "1.1234567", "1,5", "abc", ".5", "1e3"] {
            assert!(ExchangeRate::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            String::from(ExchangeRate::parse("1530.50").unwrap()),
            "1530.5"
        );
        assert_eq!(String::from(ExchangeRate::ONE), "1");
    }

    #[test]
    fn months_are_bounded_in_the_grid_timezone() {
        let lagos: chrono_tz::Tz = "Africa/Lagos".parse().unwrap();
        let p = Month::parse("2026-12").unwrap().period(lagos).unwrap();
        assert_eq!(p.start.to_rfc3339(), "2026-11-30T23:00:00+00:00");
        assert_eq!(p.end.to_rfc3339(), "2026-12-31T23:00:00+00:00");
        for bad in ["2026-13", "2026-1", "26-01", "2026/01", ""] {
            assert!(Month::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Month::parse("2026-01").unwrap().to_string(), "2026-01");
    }

    #[test]
    fn the_status_machine_is_exhaustive() {
        use PayoutEvent as E;
        use PayoutStatus as S;
        let events = [
            E::Approve,
            E::StartTransfer,
            E::TransferSucceeded,
            E::TransferFailed,
            E::TransferNotSent,
        ];
        let allowed = [
            (S::WaitingForApproval, E::Approve, S::Approved),
            (S::Approved, E::StartTransfer, S::Processing),
            (S::Failed, E::StartTransfer, S::Processing),
            (S::Processing, E::TransferSucceeded, S::Paid),
            (S::Processing, E::TransferFailed, S::Failed),
            (S::Processing, E::TransferNotSent, S::Approved),
        ];
        for from in S::ALL {
            assert_eq!(S::parse(from.as_str()), Some(from));
            for event in events {
                let expected = allowed
                    .iter()
                    .find(|(f, e, _)| *f == from && *e == event)
                    .map(|(_, _, to)| *to);
                assert_eq!(from.after(event).ok(), expected, "{from:?} + {event:?}");
            }
        }
    }

    fn finance() -> Principal {
        Principal {
            account_id: Some(kernel::AccountId(1)),
            kind: kernel::AccountKind::Member,
            organization_id: OrganizationId(1),
            role: kernel::Role::Finance,
            in_platform_org: false,
            grid_id: None,
            source: kernel::PrincipalSource::Token {
                member: Some(kernel::MemberId(1)),
                agent: None,
                customer: None,
            },
        }
    }

    fn approved() -> Payout {
        let now = Utc::now();
        Payout {
            id: PayoutId(4),
            organization_id: OrganizationId(1),
            grid_id: GridId(2),
            period: Month::parse("2026-10")
                .unwrap()
                .period("Africa/Lagos".parse().unwrap())
                .unwrap(),
            currency: ngn(),
            proposed_amount_minor: 500,
            approved_amount_minor: Some(500),
            status: PayoutStatus::Approved,
            breakdown: compute(&inputs(0, 0)).unwrap(),
            bank_account: Some(BankAccount {
                bank_code: "044".into(),
                account_number: "0690000031".into(),
                account_name: None,
            }),
            approved_by_account_id: None,
            approved_at: None,
            transfer_reference: None,
            provider_transfer_id: None,
            failure_reason: None,
            paid_at: None,
            created_at: now,
            updated_at: now,
        }
    }

    #[tokio::test]
    async fn a_payout_claimed_by_another_request_is_not_paid_twice() {
        let mut repo = MockPayoutRepo::new();
        repo.expect_get().returning(|_, _| Ok(Some(approved())));
        repo.expect_start_transfer().returning(|_, _| Ok(None));
        let mut gateway = crate::gateway::MockPaymentGateway::new();
        gateway.expect_transfer().never();
        let service = PayoutService::new(Arc::new(repo)).with_gateway(Arc::new(gateway));
        let e = service.pay(&finance(), PayoutId(4)).await.unwrap_err();
        assert!(matches!(e, DomainError::Conflict(_)), "{e:?}");
    }

    fn service_with(
        repo: MockPayoutRepo,
        transfer: Result<TransferResult, GatewayError>,
    ) -> PayoutService {
        let mut gateway = crate::gateway::MockPaymentGateway::new();
        gateway
            .expect_transfer()
            .withf(|org, t| {
                *org == Some(OrganizationId(1))
                    && t.amount == Money::new(500, ngn())
                    && t.reference == "tiamat-payout-4-1"
            })
            .return_once(move |_, _| transfer);
        PayoutService::new(Arc::new(repo)).with_gateway(Arc::new(gateway))
    }

    fn claimed_repo() -> MockPayoutRepo {
        let mut repo = MockPayoutRepo::new();
        repo.expect_get().returning(|_, _| Ok(Some(approved())));
        repo.expect_start_transfer()
            .returning(|_, _| Ok(Some("tiamat-payout-4-1".into())));
        repo
    }

    #[tokio::test]
    async fn an_unanswered_transfer_keeps_the_payout_processing() {
        let mut repo = claimed_repo();
        // Neither reversed nor settled: the outcome is read back later.
        repo.expect_settle_transfer().never();
        let service = service_with(repo, Err(GatewayError::Unavailable("timed out".into())));
        let e = service.pay(&finance(), PayoutId(4)).await.unwrap_err();
        assert!(
            matches!(e, DomainError::Unavailable(ref m) if m.contains("PROCESSING")),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn a_transfer_the_provider_does_not_know_puts_the_payout_back_to_approved() {
        let mut repo = claimed_repo();
        repo.expect_settle_transfer()
            .withf(|r, _, o| r == "tiamat-payout-4-1" && matches!(o, TransferOutcome::NotSent(_)))
            .times(1)
            .returning(|_, _, _| Ok(Some(PayoutId(4))));
        let service = service_with(repo, Err(GatewayError::NotFound));
        let e = service.pay(&finance(), PayoutId(4)).await.unwrap_err();
        assert!(matches!(e, DomainError::Unavailable(_)), "{e:?}");
    }

    #[tokio::test]
    async fn a_transfer_that_never_reached_the_provider_puts_the_payout_back_to_approved() {
        let mut repo = claimed_repo();
        repo.expect_settle_transfer()
            .withf(|r, _, o| r == "tiamat-payout-4-1" && matches!(o, TransferOutcome::NotSent(_)))
            .times(1)
            .returning(|_, _, _| Ok(Some(PayoutId(4))));
        let service = service_with(
            repo,
            Err(GatewayError::NotSent("Flutterwave: cannot connect".into())),
        );
        let e = service.pay(&finance(), PayoutId(4)).await.unwrap_err();
        assert!(
            matches!(e, DomainError::Unavailable(ref m) if m.contains("not reached")),
            "{e:?}"
        );
    }

    fn processing() -> Payout {
        Payout {
            status: PayoutStatus::Processing,
            transfer_reference: Some("tiamat-payout-4-1".into()),
            provider_transfer_id: Some("77".into()),
            organization_id: OrganizationId(9),
            ..approved()
        }
    }

    /// The provider reads transfer 77 back, for organization 9's account only.
    fn reading_back(answer: Result<VerifiedTransfer, GatewayError>) -> MockPaymentGateway {
        let mut gateway = MockPaymentGateway::new();
        gateway
            .expect_verify_transfer()
            .withf(|org, id| *org == Some(OrganizationId(9)) && id == "77")
            .times(1)
            .return_once(move |_, _| answer);
        gateway
    }

    fn transfer(reference: &str, status: ProviderStatus) -> VerifiedTransfer {
        VerifiedTransfer {
            provider_id: "77".into(),
            reference: reference.into(),
            status,
            failure_reason: None,
        }
    }

    #[tokio::test]
    async fn a_transfer_webhook_is_read_back_with_the_payouts_organization_account() {
        let mut repo = MockPayoutRepo::new();
        repo.expect_processing_transfer()
            .withf(|id, r| id == "77" && *r == Some("claimed-ref"))
            .returning(|_, _| Ok(Some(processing())));
        repo.expect_settle_transfer()
            .withf(|r, id, o| {
                r == "tiamat-payout-4-1"
                    && id.as_deref() == Some("77")
                    && *o == TransferOutcome::Succeeded
            })
            .times(1)
            .returning(|_, _, _| Ok(Some(PayoutId(4))));
        let gateway = reading_back(Ok(transfer(
            "tiamat-payout-4-1",
            ProviderStatus::Successful,
        )));
        let service = PayoutService::new(Arc::new(repo)).with_gateway(Arc::new(gateway));
        assert_eq!(
            service
                .on_transfer_webhook("77", Some("claimed-ref"))
                .await
                .unwrap(),
            (TransferWebhook::Settled {
                payout: PayoutId(4),
                succeeded: true
            })
        );
    }

    #[tokio::test]
    async fn a_transfer_webhook_settles_nothing_on_a_doubtful_or_pending_read_back() {
        for (answer, pending) in [
            (transfer("someone-elses", ProviderStatus::Successful), false),
            (transfer("tiamat-payout-4-1", ProviderStatus::Pending), true),
        ] {
            let mut repo = MockPayoutRepo::new();
            repo.expect_processing_transfer()
                .returning(|_, _| Ok(Some(processing())));
            repo.expect_settle_transfer().never();
            let service =
                PayoutService::new(Arc::new(repo)).with_gateway(Arc::new(reading_back(Ok(answer))));
            let e = service.on_transfer_webhook("77", None).await.unwrap_err();
            if pending {
                assert!(matches!(e, DomainError::Unavailable(_)), "{e:?}");
            } else {
                assert!(matches!(e, DomainError::Conflict(_)), "{e:?}");
            }
        }
    }

    #[tokio::test]
    async fn a_transfer_webhook_for_no_processing_payout_reads_nothing_back() {
        let mut repo = MockPayoutRepo::new();
        repo.expect_processing_transfer().returning(|_, _| Ok(None));
        let mut gateway = MockPaymentGateway::new();
        gateway.expect_verify_transfer().never();
        let service = PayoutService::new(Arc::new(repo)).with_gateway(Arc::new(gateway));
        assert_eq!(
            service.on_transfer_webhook("77", Some("x")).await.unwrap(),
            TransferWebhook::NoPayout
        );
    }

    #[test]
    fn bank_accounts_are_checked() {
        let ok = BankAccount {
            bank_code: "044".into(),
            account_number: "0690000031".into(),
            account_name: None,
        };
        assert!(ok.validate().is_ok());
        let bad = BankAccount {
            bank_code: "".into(),
            account_number: "12ab".into(),
            account_name: None,
        };
        match bad.validate() {
            Err(DomainError::Validation(e)) => assert_eq!(e.len(), 2),
            other => panic!("{other:?}"),
        }
    }
}
