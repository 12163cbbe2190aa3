//! Wallets and the double-entry ledger.
//!
//! A [`Posting`] is one balanced movement of money: a set of entries whose amounts sum to zero in
//! every currency. The only ways to build one ([`Posting::transfer`], [`Posting::new`],
//! [`Posting::reversal`], and the transfers with owner checks [`Posting::energy_sale`] and
//! [`Posting::payout`]) check that, so an unbalanced posting cannot exist. Applying a posting to
//! wallet balances ([`Posting::apply`]) refuses to take an ordinary wallet below zero; only
//! `System` wallets (money entering and leaving through providers) may go negative. Entries are
//! never changed: a correction is the reversing posting.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use kernel::{Currency, CustomerId, GridId, MinorUnits, OrganizationId, WalletId};
use serde::Serialize;
use utoipa::ToSchema;

use crate::vocab::{Money, WalletOwner};

/// A wallet: one owner, one currency, a cached balance (the sum of its entries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Wallet {
    pub id: WalletId,
    pub owner: WalletOwner,
    pub currency: Currency,
    /// Minor units; equal to the sum of the wallet's ledger entries.
    #[schema(value_type = i64)]
    pub balance: MinorUnits,
    /// The tenant; `None` only for `System` wallets.
    pub organization_id: Option<OrganizationId>,
    /// The grid the owner belongs to (agents, customers, connections, meters on a grid).
    pub grid_id: Option<GridId>,
    /// The customer behind a customer, connection or meter wallet (who may pay into it).
    pub customer_id: Option<CustomerId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Wallet {
    /// Only the outside world's wallets may be overdrawn.
    pub fn may_go_negative(&self) -> bool {
        self.owner.is_system()
    }

    fn expect_owner(&self, ok: bool, expected: &'static str) -> Result<(), LedgerError> {
        if ok {
            Ok(())
        } else {
            Err(LedgerError::UnexpectedOwner {
                wallet: self.id,
                expected,
            })
        }
    }
}

impl WalletOwner {
    pub fn is_system(&self) -> bool {
        matches!(self, WalletOwner::System(_))
    }

    /// The `owner_type` column and the order meta actor type.
    pub fn kind(&self) -> &'static str {
        match self {
            WalletOwner::Organization(_) => "ORGANIZATION",
            WalletOwner::Agent(_) => "AGENT",
            WalletOwner::Customer(_) => "CUSTOMER",
            WalletOwner::Meter(_) => "METER",
            WalletOwner::Connection(_) => "CONNECTION",
            WalletOwner::System(_) => "SYSTEM",
        }
    }
}

/// One line of a posting: a signed amount on one wallet (credit > 0, debit < 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostingEntry {
    pub wallet: WalletId,
    pub currency: Currency,
    pub amount: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("a posting needs at least two entries")]
    TooFewEntries,
    #[error("an entry of zero moves nothing")]
    ZeroEntry,
    #[error("the entries in {0} do not balance")]
    Unbalanced(Currency),
    #[error("the amount must be greater than zero")]
    NotPositive,
    #[error("sender and receiver are the same wallet")]
    SameWallet,
    #[error("wallet {wallet} holds {wallet_currency}, not {currency}")]
    CurrencyMismatch {
        wallet: WalletId,
        wallet_currency: Currency,
        currency: Currency,
    },
    #[error("insufficient funds in wallet {wallet}: balance {balance}, needs {needed}")]
    InsufficientFunds {
        wallet: WalletId,
        balance: i64,
        needed: i64,
    },
    #[error("wallet {0} is not part of this posting's balances")]
    UnknownWallet(WalletId),
    #[error("amount out of range")]
    Overflow,
    #[error("wallet {wallet} is not {expected} wallet")]
    UnexpectedOwner {
        wallet: WalletId,
        expected: &'static str,
    },
}

/// A balanced set of entries. Private fields: built only through the checking constructors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    entries: Vec<PostingEntry>,
}

impl Posting {
    /// Checks that the entries are non-zero, at least two, and sum to zero per currency.
    pub fn new(entries: Vec<PostingEntry>) -> Result<Self, LedgerError> {
        if entries.len() < 2 {
            return Err(LedgerError::TooFewEntries);
        }
        let mut sums: BTreeMap<&str, (Currency, i128)> = BTreeMap::new();
        for e in &entries {
            if e.amount == 0 {
                return Err(LedgerError::ZeroEntry);
            }
            let slot = sums.entry(e.currency.as_str()).or_insert((e.currency, 0));
            // i128: no sum of i64s can overflow it, so an overflow cannot pass as "balanced".
            slot.1 += i128::from(e.amount);
        }
        if let Some((c, _)) = sums.values().find(|(_, s)| *s != 0) {
            return Err(LedgerError::Unbalanced(*c));
        }
        Ok(Self { entries })
    }

    /// `amount` from `from` to `to`: the debit first, then the credit. Both wallets must hold the
    /// amount's currency.
    pub fn transfer(from: &Wallet, to: &Wallet, amount: Money) -> Result<Self, LedgerError> {
        if amount.minor.0 <= 0 {
            return Err(LedgerError::NotPositive);
        }
        if from.id == to.id {
            return Err(LedgerError::SameWallet);
        }
        for w in [from, to] {
            if w.currency != amount.currency {
                return Err(LedgerError::CurrencyMismatch {
                    wallet: w.id,
                    wallet_currency: w.currency,
                    currency: amount.currency,
                });
            }
        }
        Posting::new(vec![
            PostingEntry {
                wallet: from.id,
                currency: amount.currency,
                amount: -amount.minor.0,
            },
            PostingEntry {
                wallet: to.id,
                currency: amount.currency,
                amount: amount.minor.0,
            },
        ])
    }

    /// The money of delivered energy: the purchase's amount leaves the meter's wallet for the
    /// wallet of the organization running the meter's grid (the seller).
    pub fn energy_sale(
        meter: &Wallet,
        organization: &Wallet,
        amount: Money,
    ) -> Result<Self, LedgerError> {
        meter.expect_owner(matches!(meter.owner, WalletOwner::Meter(_)), "a meter")?;
        organization.expect_owner(
            matches!(organization.owner, WalletOwner::Organization(_)),
            "an organization",
        )?;
        Posting::transfer(meter, organization, amount)
    }

    /// A payout leaving the organization's wallet through a provider's system wallet (the
    /// transfer to the grid owner's bank account).
    pub fn payout(
        organization: &Wallet,
        provider: &Wallet,
        amount: Money,
    ) -> Result<Self, LedgerError> {
        organization.expect_owner(
            matches!(organization.owner, WalletOwner::Organization(_)),
            "an organization",
        )?;
        provider.expect_owner(provider.owner.is_system(), "a system")?;
        Posting::transfer(organization, provider, amount)
    }

    /// The posting that undoes this one (every entry negated). Balanced because this one is.
    pub fn reversal(&self) -> Result<Self, LedgerError> {
        let entries = self
            .entries
            .iter()
            .map(|e| {
                e.amount
                    .checked_neg()
                    .map(|amount| PostingEntry { amount, ..*e })
                    .ok_or(LedgerError::Overflow)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Posting::new(entries)
    }

    pub fn entries(&self) -> &[PostingEntry] {
        &self.entries
    }

    /// Wallet ids in ascending order, without repeats: the order rows must be locked in.
    pub fn wallets_in_lock_order(&self) -> Vec<WalletId> {
        let mut ids: Vec<WalletId> = self.entries.iter().map(|e| e.wallet).collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Applies the posting to the given (locked) wallets' balances, returning each entry's
    /// balance after it. Nothing changes when it fails: an ordinary wallet would go below zero,
    /// a wallet is missing, a currency does not match, or a balance would overflow.
    pub fn apply(&self, wallets: &mut [Wallet]) -> Result<Vec<i64>, LedgerError> {
        let mut balances: BTreeMap<WalletId, i64> =
            wallets.iter().map(|w| (w.id, w.balance.0)).collect();
        let mut after = Vec::with_capacity(self.entries.len());
        for e in &self.entries {
            let w = wallets
                .iter()
                .find(|w| w.id == e.wallet)
                .ok_or(LedgerError::UnknownWallet(e.wallet))?;
            if w.currency != e.currency {
                return Err(LedgerError::CurrencyMismatch {
                    wallet: w.id,
                    wallet_currency: w.currency,
                    currency: e.currency,
                });
            }
            let balance = balances.get_mut(&e.wallet).ok_or(LedgerError::Overflow)?;
            let next = balance.checked_add(e.amount).ok_or(LedgerError::Overflow)?;
            after.push(next);
            *balance = next;
        }
        // Checked on the final balances: within one posting only the net movement counts.
        for w in wallets.iter() {
            let end = balances.get(&w.id).copied().unwrap_or(w.balance.0);
            if end < 0 && !w.may_go_negative() {
                return Err(LedgerError::InsufficientFunds {
                    wallet: w.id,
                    balance: w.balance.0,
                    needed: w.balance.0 - end,
                });
            }
        }
        for w in wallets.iter_mut() {
            if let Some(b) = balances.get(&w.id) {
                w.balance = MinorUnits(*b);
            }
        }
        Ok(after)
    }
}

/// One line of a wallet statement: an entry and the balance right after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct StatementLine {
    pub entry_id: i64,
    pub transaction_id: i64,
    pub order_id: kernel::OrderId,
    /// `TRANSFER`, `PAYMENT`, `REVERSAL`, `ENERGY_SALE` (delivered energy: meter wallet →
    /// organization), `PAYOUT` (organization → provider) or `PAYOUT_REVERSAL`.
    pub kind: String,
    pub currency: Currency,
    /// Signed minor units: credits positive, debits negative.
    pub amount: i64,
    pub balance_after: i64,
    /// The other wallet of a two-entry posting.
    pub counterparty_wallet_id: Option<WalletId>,
    pub created_at: DateTime<Utc>,
}

/// What `tiamat ledger verify` found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum LedgerOffence {
    /// The cached balance is not the sum of the wallet's entries.
    BalanceDrift {
        wallet_id: WalletId,
        cached: i64,
        entries_sum: i64,
    },
    /// An entry whose recorded balance-after is not the running sum of the wallet's entries.
    RunningBalance {
        entry_id: i64,
        wallet_id: WalletId,
        recorded: i64,
        computed: i64,
    },
    /// A transaction whose entries do not sum to zero in some currency.
    Unbalanced {
        transaction_id: i64,
        currency: String,
        sum: i64,
    },
    /// An ordinary wallet below zero.
    Overdrawn { wallet_id: WalletId, balance: i64 },
    /// An entry whose currency is not its wallet's.
    CurrencyMismatch { entry_id: i64, wallet_id: WalletId },
}

/// The result of verifying the whole ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerReport {
    pub wallets: i64,
    pub transactions: i64,
    pub entries: i64,
    pub offences: Vec<LedgerOffence>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kernel::{AgentId, MeterId};
    use proptest::prelude::*;

    fn ngn() -> Currency {
        Currency::parse("NGN").unwrap()
    }

    fn wallet(id: i64, owner: WalletOwner, balance: i64) -> Wallet {
        Wallet {
            id: WalletId(id),
            owner,
            currency: ngn(),
            balance: MinorUnits(balance),
            organization_id: Some(OrganizationId(1)),
            grid_id: None,
            customer_id: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn entry(w: i64, amount: i64) -> PostingEntry {
        PostingEntry {
            wallet: WalletId(w),
            currency: ngn(),
            amount,
        }
    }

    #[test]
    fn an_unbalanced_posting_cannot_be_built() {
        assert_eq!(
            Posting::new(vec![entry(1, -5), entry(2, 4)]),
            Err(LedgerError::Unbalanced(ngn()))
        );
        assert_eq!(
            Posting::new(vec![entry(1, 5)]),
            Err(LedgerError::TooFewEntries)
        );
        assert_eq!(
            Posting::new(vec![entry(1, 0), entry(2, 0)]),
            Err(LedgerError::ZeroEntry)
        );
        // Balanced in total but not per currency.
        let usd = Currency::parse("USD").unwrap();
        let mixed = vec![
            entry(1, -5),
            PostingEntry {
                wallet: WalletId(2),
                currency: usd,
                amount: 5,
            },
        ];
        assert!(matches!(
            Posting::new(mixed),
            Err(LedgerError::Unbalanced(_))
        ));
        // Sums that would overflow i64 are still caught.
        assert!(Posting::new(vec![entry(1, i64::MAX), entry(2, i64::MAX), entry(3, 2)]).is_err());
    }

    #[test]
    fn transfer_checks_amount_wallets_and_currency() {
        let a = wallet(1, WalletOwner::Agent(AgentId(1)), 100);
        let m = wallet(2, WalletOwner::Meter(MeterId(1)), 0);
        assert_eq!(
            Posting::transfer(&a, &m, Money::new(0, ngn())),
            Err(LedgerError::NotPositive)
        );
        assert_eq!(
            Posting::transfer(&a, &a, Money::new(5, ngn())),
            Err(LedgerError::SameWallet)
        );
        let usd = Currency::parse("USD").unwrap();
        assert!(matches!(
            Posting::transfer(&a, &m, Money::new(5, usd)),
            Err(LedgerError::CurrencyMismatch { .. })
        ));
        let p = Posting::transfer(&a, &m, Money::new(5, ngn())).unwrap();
        assert_eq!(p.entries(), &[entry(1, -5), entry(2, 5)]);
        assert_eq!(p.wallets_in_lock_order(), vec![WalletId(1), WalletId(2)]);
    }

    #[test]
    fn ordinary_wallets_never_go_below_zero_system_wallets_may() {
        let mut ws = vec![
            wallet(1, WalletOwner::Agent(AgentId(1)), 10),
            wallet(2, WalletOwner::Meter(MeterId(1)), 0),
        ];
        let p = Posting::transfer(&ws[0], &ws[1], Money::new(11, ngn())).unwrap();
        assert_eq!(
            p.apply(&mut ws),
            Err(LedgerError::InsufficientFunds {
                wallet: WalletId(1),
                balance: 10,
                needed: 11
            })
        );
        assert_eq!(ws[0].balance, MinorUnits(10), "nothing changed");
        let p = Posting::transfer(&ws[0], &ws[1], Money::new(10, ngn())).unwrap();
        assert_eq!(p.apply(&mut ws).unwrap(), vec![0, 10]);
        assert_eq!(ws[1].balance, MinorUnits(10));

        let mut ws = vec![
            wallet(3, WalletOwner::System("FLUTTERWAVE".into()), 0),
            wallet(2, WalletOwner::Meter(MeterId(1)), 0),
        ];
        let p = Posting::transfer(&ws[0], &ws[1], Money::new(500, ngn())).unwrap();
        assert_eq!(p.apply(&mut ws).unwrap(), vec![-500, 500]);
    }

    #[test]
    fn energy_sales_and_payouts_check_who_owns_the_wallets() {
        let m = wallet(1, WalletOwner::Meter(MeterId(1)), 10);
        let o = wallet(2, WalletOwner::Organization(OrganizationId(1)), 0);
        let fw = wallet(3, WalletOwner::System("FLUTTERWAVE".into()), 0);
        let a = wallet(4, WalletOwner::Agent(AgentId(1)), 0);
        let sale = Posting::energy_sale(&m, &o, Money::new(10, ngn())).unwrap();
        assert_eq!(sale.entries(), &[entry(1, -10), entry(2, 10)]);
        assert_eq!(
            Posting::energy_sale(&a, &o, Money::new(10, ngn())),
            Err(LedgerError::UnexpectedOwner {
                wallet: WalletId(4),
                expected: "a meter"
            })
        );
        assert!(matches!(
            Posting::energy_sale(&m, &a, Money::new(10, ngn())),
            Err(LedgerError::UnexpectedOwner { .. })
        ));
        let payout = Posting::payout(&o, &fw, Money::new(7, ngn())).unwrap();
        assert_eq!(payout.entries(), &[entry(2, -7), entry(3, 7)]);
        assert!(matches!(
            Posting::payout(&o, &a, Money::new(7, ngn())),
            Err(LedgerError::UnexpectedOwner { .. })
        ));
        assert!(matches!(
            Posting::payout(&m, &fw, Money::new(7, ngn())),
            Err(LedgerError::UnexpectedOwner { .. })
        ));
    }

    #[test]
    fn a_reversal_undoes_the_posting() {
        let mut ws = vec![
            wallet(1, WalletOwner::Agent(AgentId(1)), 10),
            wallet(2, WalletOwner::Meter(MeterId(1)), 0),
        ];
        let p = Posting::transfer(&ws[0], &ws[1], Money::new(7, ngn())).unwrap();
        p.apply(&mut ws).unwrap();
        p.reversal().unwrap().apply(&mut ws).unwrap();
        assert_eq!(ws[0].balance, MinorUnits(10));
        assert_eq!(ws[1].balance, MinorUnits(0));
        assert_eq!(
            Posting::transfer(&ws[0], &ws[1], Money::new(7, ngn()))
                .unwrap()
                .reversal()
                .unwrap()
                .apply(&mut ws),
            Err(LedgerError::InsufficientFunds {
                wallet: WalletId(2),
                balance: 0,
                needed: 7
            }),
            "a reversal is an ordinary posting: it cannot overdraw either"
        );
    }

    #[test]
    fn apply_refuses_unknown_wallets_and_overflow() {
        let mut ws = vec![wallet(1, WalletOwner::System("CASH".into()), i64::MIN + 1)];
        let p = Posting::new(vec![entry(1, -5), entry(9, 5)]).unwrap();
        assert_eq!(
            p.apply(&mut ws),
            Err(LedgerError::Overflow),
            "the debit overflows first"
        );
        let mut ws = vec![wallet(1, WalletOwner::System("CASH".into()), 0)];
        assert_eq!(
            p.apply(&mut ws),
            Err(LedgerError::UnknownWallet(WalletId(9)))
        );
    }

    proptest! {
        /// Random transfers between random wallets (one system source per currency, ordinary
        /// wallets otherwise): whatever succeeds keeps every currency's entries summing to zero,
        /// balances equal to the sum of each wallet's entries, and no ordinary wallet negative.
        #[test]
        fn random_transfers_keep_the_ledger_sound(
            steps in proptest::collection::vec((0usize..8, 0usize..8, 1i64..1_000), 1..200)
        ) {
            let usd = Currency::parse("USD").unwrap();
            let mut ws: Vec<Wallet> = (0..8)
                .map(|i| {
                    let owner = if i % 4 == 0 {
                        WalletOwner::System(format!("SRC{i}"))
                    } else {
                        WalletOwner::Agent(AgentId(i as i64))
                    };
                    let mut w = wallet(i as i64 + 1, owner, 0);
                    if i >= 4 {
                        w.currency = usd;
                    }
                    w
                })
                .collect();
            let mut entries: Vec<PostingEntry> = Vec::new();
            for (from, to, amount) in steps {
                let (f, t) = (ws[from].clone(), ws[to].clone());
                let Ok(p) = Posting::transfer(&f, &t, Money::new(amount, f.currency)) else {
                    prop_assert!(f.id == t.id || f.currency != t.currency);
                    continue;
                };
                let mut locked: Vec<Wallet> = ws
                    .iter()
                    .filter(|w| p.wallets_in_lock_order().contains(&w.id))
                    .cloned()
                    .collect();
                match p.apply(&mut locked) {
                    Ok(_) => {
                        entries.extend_from_slice(p.entries());
                        for l in locked {
                            if let Some(w) = ws.iter_mut().find(|w| w.id == l.id) {
                                *w = l;
                            }
                        }
                    }
                    Err(LedgerError::InsufficientFunds { .. }) => {
                        prop_assert!(!f.may_go_negative() && f.balance.0 < amount);
                    }
                    Err(e) => prop_assert!(false, "unexpected {e}"),
                }
            }
            for c in [ngn(), usd] {
                let sum: i64 = entries.iter().filter(|e| e.currency == c).map(|e| e.amount).sum();
                prop_assert_eq!(sum, 0);
            }
            for w in &ws {
                let sum: i64 = entries.iter().filter(|e| e.wallet == w.id).map(|e| e.amount).sum();
                prop_assert_eq!(sum, w.balance.0);
                prop_assert!(w.may_go_negative() || w.balance.0 >= 0);
            }
        }
    }
}
