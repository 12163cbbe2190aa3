//! Typed ids: a grid id can never be passed where a customer id is expected.

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(transparent)]
        #[schema(value_type = i64)]
        pub struct $name(pub i64);

        impl $name {
            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<i64> for $name {
            fn from(v: i64) -> Self {
                Self(v)
            }
        }
    )*};
}

id_type!(
    /// An organization (the tenant).
    OrganizationId,
    /// An account: one per login identity.
    AccountId,
    /// A member (staff) role row of an account.
    MemberId,
    /// An agent (vendor) role row of an account.
    AgentId,
    /// A customer role row of an account.
    CustomerId,
    /// A mini-grid site.
    GridId,
    /// A machine API key.
    ApiKeyId,
    /// An audit event.
    AuditEventId,
    /// A metering gateway: a CALIN DCU or a LoRaWAN gateway (`dcus`, the legacy name).
    DcuId,
    /// A solar charge controller or PV inverter.
    MpptId,
    /// A distribution pole.
    PoleId,
    /// A customer's service connection.
    ConnectionId,
    /// A meter the customer asked for at sign-up.
    RequestedMeterId,
    /// A prepaid meter.
    MeterId,
    /// A wallet on the ledger.
    WalletId,
    /// A money order (a transfer between wallets, or a payment from outside).
    OrderId,
    /// A payout to a grid owner.
    PayoutId,
);
