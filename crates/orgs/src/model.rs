//! Entities and the inputs that create or change them.

use chrono::{DateTime, Utc};
use kernel::{
    AccountId, AgentId, ApiKeyId, AuditEventId, CustomerId, GridId, MemberId, MinorUnits,
    OrganizationId, Principal, Role,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrganizationType {
    SolarDeveloper,
    Lender,
    DataAggregator,
}

impl OrganizationType {
    pub fn as_str(self) -> &'static str {
        match self {
            OrganizationType::SolarDeveloper => "SOLAR_DEVELOPER",
            OrganizationType::Lender => "LENDER",
            OrganizationType::DataAggregator => "DATA_AGGREGATOR",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::SolarDeveloper, Self::Lender, Self::DataAggregator]
            .into_iter()
            .find(|t| t.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Organization {
    pub id: OrganizationId,
    pub name: String,
    pub formal_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub address: Option<String>,
    pub organization_type: OrganizationType,
    /// The organization that operates tiamat; its SUPERADMINs act across all organizations.
    pub is_platform: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct OrganizationFields {
    pub name: Option<String>,
    pub formal_name: Option<Option<String>>,
    pub email: Option<Option<String>>,
    pub phone: Option<Option<String>>,
    pub address: Option<Option<String>>,
    pub organization_type: Option<OrganizationType>,
}

/// Contact details of the person behind an account.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PersonFields {
    pub full_name: Option<String>,
    pub email: Option<Option<String>>,
    pub phone: Option<Option<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Member {
    pub id: MemberId,
    pub account_id: AccountId,
    pub organization_id: OrganizationId,
    /// The identity provider's user id (the JWT `sub`).
    pub auth_user_id: Option<Uuid>,
    pub full_name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub role: Role,
    pub training_level: i16,
    pub hidden: bool,
    pub subscribed_to_revenue_notifications: bool,
    pub commissioning_grid_id: Option<GridId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewMember {
    pub organization_id: OrganizationId,
    pub auth_user_id: Option<Uuid>,
    pub full_name: String,
    pub email: String,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct MemberChanges {
    pub person: PersonFields,
    pub role: Option<Role>,
    pub training_level: Option<i16>,
    pub hidden: Option<bool>,
    pub subscribed_to_revenue_notifications: Option<bool>,
    pub commissioning_grid_id: Option<Option<GridId>>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct MemberFilter {
    pub role: Option<Role>,
    pub search: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Agent {
    pub id: AgentId,
    pub account_id: AccountId,
    pub organization_id: OrganizationId,
    pub grid_id: GridId,
    pub auth_user_id: Option<Uuid>,
    pub full_name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewAgent {
    pub grid_id: GridId,
    pub auth_user_id: Option<Uuid>,
    pub full_name: String,
    pub email: Option<String>,
    pub phone: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct AgentChanges {
    pub person: PersonFields,
    pub grid_id: Option<GridId>,
}

/// Filters shared by agent and customer lists.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PeopleFilter {
    pub grid_id: Option<GridId>,
    /// Case-insensitive match on name, phone or e-mail.
    pub search: Option<String>,
    /// Restricts a list to one customer (a customer reading its own record).
    pub only_customer: Option<CustomerId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Gender {
    Male,
    Female,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GeneratorSize {
    Small,
    Large,
}

macro_rules! text_enum {
    ($t:ty { $($v:ident => $s:literal),* }) => {
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self { $(<$t>::$v => $s),* }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some(<$t>::$v),)* _ => None }
            }
        }
    };
}
text_enum!(Gender { Male => "MALE", Female => "FEMALE" });
text_enum!(GeneratorSize { Small => "SMALL", Large => "LARGE" });

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Customer {
    pub id: CustomerId,
    pub account_id: AccountId,
    pub organization_id: OrganizationId,
    pub grid_id: GridId,
    pub auth_user_id: Option<Uuid>,
    pub full_name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub gender: Option<Gender>,
    pub generator_owned: Option<GeneratorSize>,
    pub is_hidden_from_reporting: bool,
    pub lives_primarily_in_the_community: bool,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    /// Minor units of the grid's currency.
    pub total_connection_fee: MinorUnits,
    pub total_connection_paid: MinorUnits,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct CustomerFields {
    pub gender: Option<Option<Gender>>,
    pub generator_owned: Option<Option<GeneratorSize>>,
    pub is_hidden_from_reporting: Option<bool>,
    pub lives_primarily_in_the_community: Option<bool>,
    pub latitude: Option<Option<f64>>,
    pub longitude: Option<Option<f64>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewCustomer {
    pub grid_id: GridId,
    pub auth_user_id: Option<Uuid>,
    pub full_name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub fields: CustomerFields,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct CustomerChanges {
    pub person: PersonFields,
    pub grid_id: Option<GridId>,
    pub fields: CustomerFields,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub organization_id: OrganizationId,
    pub name: String,
    /// The public start of the key, enough to recognise it; the secret is never stored.
    pub prefix: String,
    pub role: Role,
    pub created_by_account_id: Option<AccountId>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewApiKey {
    pub organization_id: OrganizationId,
    pub name: String,
    pub prefix: String,
    pub secret_hash: [u8; 32],
    pub role: Role,
    pub created_by_account_id: Option<AccountId>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// What the key store knows about a presented key, for the authenticator to judge.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredKey {
    pub id: ApiKeyId,
    pub organization_id: OrganizationId,
    pub organization_is_platform: bool,
    pub role: Role,
    pub secret_hash: Vec<u8>,
    pub created_by_account_id: Option<AccountId>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AuditEvent {
    pub id: AuditEventId,
    pub organization_id: OrganizationId,
    pub actor_account_id: Option<AccountId>,
    pub actor_api_key_id: Option<ApiKeyId>,
    /// `<resource>.<verb>`, e.g. `customer.created`.
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<i64>,
    pub details: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct AuditFilter {
    pub resource_type: Option<String>,
    pub resource_id: Option<i64>,
    pub actor_account_id: Option<AccountId>,
    pub action: Option<String>,
}

/// Who did it and what; the repository adds the organization and resource it changed, in the
/// same transaction as the change.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditDraft {
    pub actor_account_id: Option<AccountId>,
    pub actor_api_key_id: Option<ApiKeyId>,
    pub action: &'static str,
    pub details: serde_json::Value,
}

impl AuditDraft {
    pub fn by(principal: &Principal, action: &'static str, details: serde_json::Value) -> Self {
        Self {
            actor_account_id: principal.account_id,
            actor_api_key_id: principal.api_key_id(),
            action,
            details,
        }
    }

    /// A change made by the system itself (bootstrap, migrations).
    pub fn system(action: &'static str, details: serde_json::Value) -> Self {
        Self {
            actor_account_id: None,
            actor_api_key_id: None,
            action,
            details,
        }
    }
}
