//! The vocabulary every part of payments shares.

use kernel::{AgentId, ConnectionId, Currency, CustomerId, MeterId, MinorUnits, OrganizationId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An amount of one currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub struct Money {
    pub minor: MinorUnits,
    pub currency: Currency,
}

impl Money {
    pub fn new(minor: i64, currency: Currency) -> Self {
        Self {
            minor: MinorUnits(minor),
            currency,
        }
    }
}

/// Who a wallet belongs to. `System` wallets (one per currency and provider) stand for money
/// entering and leaving through payment providers; only they may go below zero.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", content = "id", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WalletOwner {
    Organization(OrganizationId),
    Agent(AgentId),
    Customer(CustomerId),
    Meter(MeterId),
    Connection(ConnectionId),
    /// The outside world through a provider (e.g. "FLUTTERWAVE", "CASH").
    System(String),
}

/// `order_type_enum`, inferred from the wallets (§2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderType {
    EnergyTopup,
    ConnectionPayment,
    ConnectionRefund,
    AgentWithdrawal,
    AgentTopup,
    OrganizationTopup,
    OrganizationWithdrawal,
    CustomerTopup,
}

/// `order_status_enum`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    /// Waiting for an external payment to be confirmed.
    Initialised,
    /// Ready to be posted to the ledger.
    Pending,
    Completed,
    Failed,
    Cancelled,
    TimedOut,
    Ignored,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Initialised => "INITIALISED",
            OrderStatus::Pending => "PENDING",
            OrderStatus::Completed => "COMPLETED",
            OrderStatus::Failed => "FAILED",
            OrderStatus::Cancelled => "CANCELLED",
            OrderStatus::TimedOut => "TIMED_OUT",
            OrderStatus::Ignored => "IGNORED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            OrderStatus::Initialised,
            OrderStatus::Pending,
            OrderStatus::Completed,
            OrderStatus::Failed,
            OrderStatus::Cancelled,
            OrderStatus::TimedOut,
            OrderStatus::Ignored,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        match self {
            OrderStatus::Completed
            | OrderStatus::Failed
            | OrderStatus::Cancelled
            | OrderStatus::Ignored => true,
            // A timed-out payment may still be confirmed by a late verification.
            OrderStatus::Initialised | OrderStatus::Pending | OrderStatus::TimedOut => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_only_final_ones_are_terminal() {
        for s in [
            OrderStatus::Initialised,
            OrderStatus::Pending,
            OrderStatus::Completed,
            OrderStatus::Failed,
            OrderStatus::Cancelled,
            OrderStatus::TimedOut,
            OrderStatus::Ignored,
        ] {
            assert_eq!(OrderStatus::parse(s.as_str()), Some(s));
        }
        assert!(OrderStatus::Completed.is_terminal());
        assert!(!OrderStatus::TimedOut.is_terminal());
        assert_eq!(OrderStatus::parse("completed"), None);
    }
}
