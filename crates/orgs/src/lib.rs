//! Organizations, accounts (members, agents, customers), API keys and the audit trail.
//!
//! Pure domain: services hold the rules and talk to storage and the identity provider through
//! the ports in [`ports`].

pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod identity;
pub mod key_cache;
pub mod model;
pub mod organizations;
pub mod people;
pub mod ports;

pub use api_keys::{ApiKeyService, IssuedApiKey};
pub use audit::AuditService;
pub use auth::{AuthFailure, Authenticator, Credential};
pub use identity::LocalIdentityProvider;
pub use key_cache::KeyCache;
pub use model::*;
pub use organizations::OrganizationService;
pub use people::{AgentService, CustomerService, MemberService};
pub use ports::*;
