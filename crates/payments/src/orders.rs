//! Orders: transfers of money between two wallets, their types, statuses and who may make them.

use chrono::{DateTime, Utc};
use kernel::{
    AccountId, ApiKeyId, Currency, DomainError, GridId, OrderId, OrganizationId, Permission,
    Principal, Role, WalletId,
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::ledger::Wallet;
use crate::vocab::{Money, OrderStatus, OrderType, WalletOwner};

/// An order as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Order {
    pub id: OrderId,
    pub organization_id: OrganizationId,
    pub sender_wallet_id: WalletId,
    pub receiver_wallet_id: WalletId,
    /// Minor units of `currency`, always > 0.
    pub amount: i64,
    pub currency: Currency,
    pub order_type: Option<OrderType>,
    pub status: OrderStatus,
    /// Owner types of the two wallets (`AGENT`, `METER`, `SYSTEM`...).
    pub sender_owner_type: String,
    pub receiver_owner_type: String,
    /// The grid the order counts for in reporting (the receiver's, else the sender's).
    pub grid_id: Option<GridId>,
    pub is_hidden_from_reporting: bool,
    pub provider: Option<String>,
    /// Our unguessable reference for an external payment (the provider's `tx_ref`).
    pub external_reference: Option<String>,
    pub provider_transaction_id: Option<String>,
    pub payment_method: Option<String>,
    pub payment_channel: Option<String>,
    pub author_account_id: Option<AccountId>,
    pub author_api_key_id: Option<ApiKeyId>,
    /// The order this one refunds.
    pub reverses_order_id: Option<OrderId>,
    pub failure_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl Order {
    pub fn money(&self) -> Money {
        Money::new(self.amount, self.currency)
    }
}

/// The predecessor's order type inference (§2.3): the receiver decides, the sender refines
/// transfers into an organization. `platform_org` is the organization operating tiamat (the
/// predecessor's "NXT Grid"): its transfers into another organization are top-ups.
pub fn infer_type(
    sender: &WalletOwner,
    receiver: &WalletOwner,
    platform_org: Option<OrganizationId>,
) -> Option<OrderType> {
    use WalletOwner as W;
    match receiver {
        W::Agent(_) => Some(OrderType::AgentTopup),
        // The predecessor never set a type here; CUSTOMER_TOPUP is the enum value that says it.
        W::Customer(_) => Some(OrderType::CustomerTopup),
        W::Meter(_) => Some(OrderType::EnergyTopup),
        W::Connection(_) => Some(OrderType::ConnectionPayment),
        W::Organization(_) => match sender {
            W::Connection(_) => Some(OrderType::ConnectionRefund),
            W::System(_) => Some(OrderType::OrganizationTopup),
            W::Organization(o) if Some(*o) == platform_org => Some(OrderType::OrganizationTopup),
            W::Organization(_) => Some(OrderType::OrganizationWithdrawal),
            W::Agent(_) => Some(OrderType::AgentWithdrawal),
            W::Meter(_) | W::Customer(_) => None,
        },
        // Money leaving through a provider.
        W::System(_) => match sender {
            W::Organization(_) => Some(OrderType::OrganizationWithdrawal),
            W::Agent(_) => Some(OrderType::AgentWithdrawal),
            W::Connection(_) => Some(OrderType::ConnectionRefund),
            W::Meter(_) | W::Customer(_) | W::System(_) => None,
        },
    }
}

/// What happens to an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderEvent {
    /// The external payment is confirmed but not yet posted (kept for the predecessor's flow).
    Confirm,
    /// Posted to the ledger.
    Complete,
    /// Refused: insufficient funds, a mismatching payment, a provider failure.
    Fail,
    /// The payer abandoned it (public cancel): only before payment.
    Cancel,
    /// Nobody paid in time (the sweeper).
    TimeOut,
    /// Deliberately disregarded by an operator.
    Ignore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an order in status {} cannot {event:?}", from.as_str())]
pub struct TransitionError {
    pub from: OrderStatus,
    pub event: OrderEvent,
}

/// The order state machine. Stores apply it as a compare-and-set: the update names the status
/// it expects (see [`OrderEvent::allowed_from`]), so two racing writers cannot both win.
pub fn transition(from: OrderStatus, event: OrderEvent) -> Result<OrderStatus, TransitionError> {
    use OrderEvent as E;
    use OrderStatus as S;
    let to = match (from, event) {
        (S::Initialised, E::Confirm) => S::Pending,
        (S::Initialised | S::Pending | S::TimedOut, E::Complete) => S::Completed,
        (S::Initialised | S::Pending | S::TimedOut, E::Fail) => S::Failed,
        (S::Initialised, E::Cancel) => S::Cancelled,
        (S::Initialised, E::TimeOut) => S::TimedOut,
        (S::Initialised | S::Pending | S::TimedOut, E::Ignore) => S::Ignored,
        (S::Pending, E::Confirm | E::Cancel | E::TimeOut)
        | (S::TimedOut, E::Confirm | E::Cancel | E::TimeOut)
        | (S::Completed | S::Failed | S::Cancelled | S::Ignored, _) => {
            return Err(TransitionError { from, event });
        }
    };
    Ok(to)
}

impl OrderEvent {
    pub const ALL: [OrderEvent; 6] = [
        OrderEvent::Confirm,
        OrderEvent::Complete,
        OrderEvent::Fail,
        OrderEvent::Cancel,
        OrderEvent::TimeOut,
        OrderEvent::Ignore,
    ];

    /// The statuses this event may leave: the `WHERE status IN (...)` of the compare-and-set.
    pub fn allowed_from(self) -> Vec<OrderStatus> {
        OrderStatus::ALL
            .into_iter()
            .filter(|s| transition(*s, self).is_ok())
            .collect()
    }
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 7] = [
        OrderStatus::Initialised,
        OrderStatus::Pending,
        OrderStatus::Completed,
        OrderStatus::Failed,
        OrderStatus::Cancelled,
        OrderStatus::TimedOut,
        OrderStatus::Ignored,
    ];
}

impl OrderType {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderType::EnergyTopup => "ENERGY_TOPUP",
            OrderType::ConnectionPayment => "CONNECTION_PAYMENT",
            OrderType::ConnectionRefund => "CONNECTION_REFUND",
            OrderType::AgentWithdrawal => "AGENT_WITHDRAWAL",
            OrderType::AgentTopup => "AGENT_TOPUP",
            OrderType::OrganizationTopup => "ORGANIZATION_TOPUP",
            OrderType::OrganizationWithdrawal => "ORGANIZATION_WITHDRAWAL",
            OrderType::CustomerTopup => "CUSTOMER_TOPUP",
        }
    }

    pub const ALL: [OrderType; 8] = [
        OrderType::EnergyTopup,
        OrderType::ConnectionPayment,
        OrderType::ConnectionRefund,
        OrderType::AgentWithdrawal,
        OrderType::AgentTopup,
        OrderType::OrganizationTopup,
        OrderType::OrganizationWithdrawal,
        OrderType::CustomerTopup,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        OrderType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// May `who` move money from `sender` to `receiver`? Both wallets were loaded within the caller's
/// tenant scope (another tenant's wallet is already a 404).
///
/// * a SUPERADMIN may do anything, including taking money in from a `System` wallet;
/// * finance roles (`order_manage`) move money between the organization's ordinary wallets;
/// * an agent (`top_up_sell`) spends only from its own wallet, to meters and connections of its
///   own grid;
/// * a customer (`pay_own`) pays only from its own wallet into its own meters and connections.
pub fn authorize_transfer(
    who: &Principal,
    sender: &Wallet,
    receiver: &Wallet,
) -> Result<(), DomainError> {
    // A meter's money is owed to the customer until its energy is delivered: it leaves only as
    // an energy sale (to the grid's organization) or a refund (to the payer), both of which the
    // purchase follows. Moved out by hand, the purchase could neither deliver nor refund.
    if matches!(sender.owner, WalletOwner::Meter(_)) {
        return Err(DomainError::Conflict(
            "a meter wallet's money leaves only as delivered energy or a refund".into(),
        ));
    }
    if who.role == Role::Superadmin {
        return Ok(());
    }
    if sender.owner.is_system() || receiver.owner.is_system() {
        return Err(DomainError::Forbidden(
            "only a SUPERADMIN moves money through system wallets".into(),
        ));
    }
    if who.can(Permission::OrderManage) {
        return Ok(());
    }
    if who.can(Permission::TopUpSell) {
        let own = who.agent_id();
        let from_own_wallet = matches!(sender.owner, WalletOwner::Agent(a) if Some(a) == own);
        let to_own_grid = matches!(
            receiver.owner,
            WalletOwner::Meter(_) | WalletOwner::Connection(_)
        ) && receiver.grid_id.is_some()
            && receiver.grid_id == who.grid_id;
        return if !from_own_wallet {
            Err(DomainError::Forbidden(
                "an agent spends only from its own wallet".into(),
            ))
        } else if !to_own_grid {
            Err(DomainError::Forbidden(
                "an agent tops up meters and connections of its own grid only".into(),
            ))
        } else {
            Ok(())
        };
    }
    if who.can(Permission::PayOwn) {
        let me = who.customer_id();
        let from_own_wallet = matches!(sender.owner, WalletOwner::Customer(c) if Some(c) == me);
        let to_own = matches!(
            receiver.owner,
            WalletOwner::Meter(_) | WalletOwner::Connection(_)
        ) && me.is_some()
            && receiver.customer_id == me;
        return if from_own_wallet && to_own {
            Ok(())
        } else {
            Err(DomainError::Forbidden(
                "a customer pays only from its own wallet for its own meters and connections"
                    .into(),
            ))
        };
    }
    Err(DomainError::Forbidden(format!(
        "role {} may not move money",
        who.role
    )))
}

/// May `who` refund (reverse) an order? Refunds are finance work.
pub fn authorize_refund(who: &Principal) -> Result<(), DomainError> {
    who.require(Permission::RefundManage)
}

/// Validation of a transfer request before anything is loaded.
pub fn validate_transfer(
    sender: WalletId,
    receiver: WalletId,
    amount: i64,
) -> Result<(), DomainError> {
    kernel::Validator::new()
        .check(amount > 0, "amount", "must be greater than zero")
        .check(
            sender != receiver,
            "receiver_wallet_id",
            "must differ from sender_wallet_id",
        )
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kernel::{
        AccountKind, AgentId, ConnectionId, CustomerId, MeterId, MinorUnits, PrincipalSource,
    };

    fn ngn() -> Currency {
        Currency::parse("NGN").unwrap()
    }

    fn wallet(id: i64, owner: WalletOwner, grid: Option<i64>, customer: Option<i64>) -> Wallet {
        Wallet {
            id: WalletId(id),
            owner,
            currency: ngn(),
            balance: MinorUnits(0),
            organization_id: Some(OrganizationId(1)),
            grid_id: grid.map(GridId),
            customer_id: customer.map(CustomerId),
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn principal(role: Role) -> Principal {
        let (kind, agent, customer) = match role {
            Role::Agent => (AccountKind::Agent, Some(AgentId(5)), None),
            Role::Customer => (AccountKind::Customer, None, Some(CustomerId(6))),
            _ => (AccountKind::Member, None, None),
        };
        Principal {
            account_id: Some(AccountId(1)),
            kind,
            organization_id: OrganizationId(1),
            role,
            in_platform_org: false,
            grid_id: Some(GridId(10)),
            source: PrincipalSource::Token {
                member: None,
                agent,
                customer,
            },
        }
    }

    #[test]
    fn types_follow_the_predecessor_inference() {
        use WalletOwner as W;
        let org = W::Organization(OrganizationId(2));
        let platform = Some(OrganizationId(1));
        let cases = [
            (
                org.clone(),
                W::Agent(AgentId(1)),
                Some(OrderType::AgentTopup),
            ),
            (
                W::Agent(AgentId(1)),
                W::Meter(MeterId(1)),
                Some(OrderType::EnergyTopup),
            ),
            (
                W::Customer(CustomerId(1)),
                W::Connection(ConnectionId(1)),
                Some(OrderType::ConnectionPayment),
            ),
            (
                W::Connection(ConnectionId(1)),
                org.clone(),
                Some(OrderType::ConnectionRefund),
            ),
            (
                W::Organization(OrganizationId(1)),
                org.clone(),
                Some(OrderType::OrganizationTopup),
            ),
            (
                W::Organization(OrganizationId(3)),
                org.clone(),
                Some(OrderType::OrganizationWithdrawal),
            ),
            (
                W::System("CASH".into()),
                org.clone(),
                Some(OrderType::OrganizationTopup),
            ),
            (
                W::Agent(AgentId(1)),
                org.clone(),
                Some(OrderType::AgentWithdrawal),
            ),
            (W::Meter(MeterId(1)), org.clone(), None),
            (
                W::System("FLUTTERWAVE".into()),
                W::Customer(CustomerId(1)),
                Some(OrderType::CustomerTopup),
            ),
        ];
        for (s, r, t) in cases {
            assert_eq!(infer_type(&s, &r, platform), t, "{s:?} -> {r:?}");
        }
        for t in OrderType::ALL {
            assert_eq!(OrderType::parse(t.as_str()), Some(t));
        }
    }

    #[test]
    fn transitions_table() {
        use OrderEvent as E;
        use OrderStatus as S;
        let table = [
            (S::Initialised, E::Complete, Some(S::Completed)),
            (S::Initialised, E::Cancel, Some(S::Cancelled)),
            (S::Initialised, E::TimeOut, Some(S::TimedOut)),
            (S::Initialised, E::Confirm, Some(S::Pending)),
            (S::Initialised, E::Fail, Some(S::Failed)),
            (S::Pending, E::Complete, Some(S::Completed)),
            (S::Pending, E::Cancel, None),
            (S::TimedOut, E::Complete, Some(S::Completed)),
            (S::TimedOut, E::Cancel, None),
            (S::TimedOut, E::TimeOut, None),
            (S::Completed, E::Complete, None),
            (S::Completed, E::Fail, None),
            (S::Failed, E::Complete, None),
            (S::Cancelled, E::Complete, None),
        ];
        for (from, event, to) in table {
            assert_eq!(transition(from, event).ok(), to, "{from:?} {event:?}");
        }
        // Terminal statuses accept nothing; non-terminal ones accept at least Complete or Fail.
        for s in OrderStatus::ALL {
            let moves = OrderEvent::ALL
                .iter()
                .filter(|e| transition(s, **e).is_ok())
                .count();
            assert_eq!(moves == 0, s.is_terminal(), "{s:?}");
        }
        assert_eq!(
            OrderEvent::Complete.allowed_from(),
            vec![S::Initialised, S::Pending, S::TimedOut]
        );
        assert_eq!(OrderEvent::Cancel.allowed_from(), vec![S::Initialised]);
    }

    #[test]
    fn who_may_move_money() {
        use WalletOwner as W;
        let org = wallet(1, W::Organization(OrganizationId(1)), None, None);
        let own_agent = wallet(2, W::Agent(AgentId(5)), Some(10), None);
        let other_agent = wallet(3, W::Agent(AgentId(7)), Some(10), None);
        let meter_here = wallet(4, W::Meter(MeterId(1)), Some(10), Some(6));
        let meter_elsewhere = wallet(5, W::Meter(MeterId(2)), Some(11), Some(8));
        let own_customer = wallet(6, W::Customer(CustomerId(6)), Some(10), Some(6));
        let own_connection = wallet(7, W::Connection(ConnectionId(1)), Some(10), Some(6));
        let system = wallet(8, W::System("CASH".into()), None, None);

        let agent = principal(Role::Agent);
        assert!(authorize_transfer(&agent, &own_agent, &meter_here).is_ok());
        assert!(authorize_transfer(&agent, &own_agent, &meter_elsewhere).is_err());
        assert!(authorize_transfer(&agent, &other_agent, &meter_here).is_err());
        assert!(authorize_transfer(&agent, &own_agent, &other_agent).is_err());
        assert!(authorize_transfer(&agent, &org, &own_agent).is_err());

        let customer = principal(Role::Customer);
        assert!(authorize_transfer(&customer, &own_customer, &meter_here).is_ok());
        assert!(authorize_transfer(&customer, &own_customer, &own_connection).is_ok());
        assert!(authorize_transfer(&customer, &own_customer, &meter_elsewhere).is_err());
        assert!(authorize_transfer(&customer, &own_agent, &meter_here).is_err());

        for role in [Role::Finance, Role::Admin] {
            let p = principal(role);
            assert!(authorize_transfer(&p, &org, &own_agent).is_ok(), "{role}");
            assert!(authorize_transfer(&p, &system, &org).is_err(), "{role}");
        }
        for role in [Role::Manager, Role::Support, Role::Developer, Role::Tech] {
            assert!(
                authorize_transfer(&principal(role), &org, &own_agent).is_err(),
                "{role}"
            );
        }
        assert!(authorize_transfer(&principal(Role::Superadmin), &system, &org).is_ok());
        // Nobody moves a meter's money by hand, not even a SUPERADMIN.
        for role in [Role::Superadmin, Role::Finance] {
            assert!(matches!(
                authorize_transfer(&principal(role), &meter_here, &org),
                Err(DomainError::Conflict(_))
            ));
        }
        assert!(authorize_refund(&principal(Role::Finance)).is_ok());
        assert!(authorize_refund(&principal(Role::Manager)).is_err());
    }

    #[test]
    fn transfer_input_is_validated() {
        assert!(validate_transfer(WalletId(1), WalletId(2), 1).is_ok());
        match validate_transfer(WalletId(1), WalletId(1), 0) {
            Err(DomainError::Validation(errs)) => assert_eq!(errs.len(), 2),
            other => panic!("{other:?}"),
        }
    }
}
