//! Money (issue 5). Pure: rules, state machines and ports; storage and providers are adapters.
//!
//! * [`vocab`]: who owns a wallet, order types and statuses (the predecessor's names), amounts.
//! * [`gateway`]: the payment provider port (Flutterwave is the `flutterwave` crate) and the
//!   settlement port through which a verified external payment is credited exactly once.
//! * [`ledger`]: wallets and balanced postings (double entry); [`orders`]: order types, the
//!   status machine and who may move money; [`service`]: the ledger's store port and the
//!   service the routes call (its module docs list the store API).
//!
//! Amounts are integer minor units of one currency ([`kernel::MinorUnits`], [`kernel::Currency`]);
//! there are no floats anywhere in this crate.

pub mod checkout;
pub mod credentials;
pub mod gateway;
pub mod ledger;
pub mod orders;
pub mod payouts;
pub mod purchase;
pub mod refunds;
pub mod service;
pub mod vocab;

pub use credentials::{
    CredentialService, CredentialSource, CredentialStore, CredentialsSummary, CredentialsUpdate,
    ProviderCredentials,
};
pub use gateway::{
    GatewayError, HostedPayment, HostedPaymentRequest, PaymentGateway, PaymentSettlement,
    ProviderRefund, ProviderStatus, Settlement, TransferRequest, TransferResult, VerifiedPayment,
    VerifiedTransfer,
};
pub use ledger::{LedgerError, Posting, PostingEntry, StatementLine, Wallet};
pub use orders::{Order, OrderEvent, infer_type, transition};
pub use service::{
    LedgerStore, MoneyService, NewPaymentOrder, OrderFilter, PaymentOrderStore, RefundDraft,
    RevenueLine, Sender, TransferDraft, WalletFilter,
};
pub use vocab::{Money, OrderStatus, OrderType, WalletOwner};
