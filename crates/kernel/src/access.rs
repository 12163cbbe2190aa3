//! Who is calling, what they may do, and which tenants they may see.
//!
//! The role → permission matrix is the single source of authorization truth (DESIGN.md §3).

use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::ids::{AccountId, AgentId, ApiKeyId, CustomerId, GridId, MemberId, OrganizationId};

/// Roles: the predecessor's member types plus the agent and customer principals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Role {
    Superadmin,
    Admin,
    Partner,
    Finance,
    Developer,
    Manager,
    Support,
    Service,
    Sales,
    Tech,
    Agent,
    Customer,
}

impl Role {
    pub const ALL: [Role; 12] = [
        Role::Superadmin,
        Role::Admin,
        Role::Partner,
        Role::Finance,
        Role::Developer,
        Role::Manager,
        Role::Support,
        Role::Service,
        Role::Sales,
        Role::Tech,
        Role::Agent,
        Role::Customer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Superadmin => "SUPERADMIN",
            Role::Admin => "ADMIN",
            Role::Partner => "PARTNER",
            Role::Finance => "FINANCE",
            Role::Developer => "DEVELOPER",
            Role::Manager => "MANAGER",
            Role::Support => "SUPPORT",
            Role::Service => "SERVICE",
            Role::Sales => "SALES",
            Role::Tech => "TECH",
            Role::Agent => "AGENT",
            Role::Customer => "CUSTOMER",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Roles a member (staff) or an API key can hold; agents and customers are other kinds of account.
    pub fn is_staff(self) -> bool {
        !matches!(self, Role::Agent | Role::Customer)
    }

    pub fn permissions(self) -> &'static [Permission] {
        permissions_of(self)
    }

    pub fn has(self, p: Permission) -> bool {
        self.permissions().contains(&p)
    }

    /// `self` may hand `other` to someone: only a SUPERADMIN grants SUPERADMIN, and nobody grants
    /// a role that can do something they cannot.
    pub fn may_grant(self, other: Role) -> bool {
        if other == Role::Superadmin {
            return self == Role::Superadmin;
        }
        other.permissions().iter().all(|p| self.has(*p))
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything a route can require. Later features add theirs here and to the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    OrganizationRead,
    OrganizationManage,
    /// Create organizations: meaningful only for the platform organization's SUPERADMINs.
    OrganizationCreate,
    MemberRead,
    MemberManage,
    ApiKeyManage,
    AuditRead,
    GridRead,
    GridManage,
    InfrastructureRead,
    InfrastructureManage,
    MeterRead,
    MeterManage,
    MeterCommand,
    /// Scheduled directive batches (FS switching, scans) and running them.
    BatchManage,
    InstallManage,
    CustomerRead,
    CustomerManage,
    AgentRead,
    AgentManage,
    ConnectionRead,
    ConnectionManage,
    TokenRedeliver,
    MoneyRead,
    OrderManage,
    RefundManage,
    PayoutApprove,
    /// An agent sells credit from its own wallet.
    TopUpSell,
    /// A customer pays for its own meters and connections.
    PayOwn,
}

use Permission as P;

const READS: &[Permission] = &[
    P::OrganizationRead,
    P::MemberRead,
    P::AuditRead,
    P::GridRead,
    P::InfrastructureRead,
    P::MeterRead,
    P::CustomerRead,
    P::AgentRead,
    P::ConnectionRead,
    P::MoneyRead,
];

const EVERYTHING: &[Permission] = &[
    P::OrganizationRead,
    P::OrganizationManage,
    P::OrganizationCreate,
    P::MemberRead,
    P::MemberManage,
    P::ApiKeyManage,
    P::AuditRead,
    P::GridRead,
    P::GridManage,
    P::InfrastructureRead,
    P::InfrastructureManage,
    P::MeterRead,
    P::MeterManage,
    P::MeterCommand,
    P::BatchManage,
    P::InstallManage,
    P::CustomerRead,
    P::CustomerManage,
    P::AgentRead,
    P::AgentManage,
    P::ConnectionRead,
    P::ConnectionManage,
    P::TokenRedeliver,
    P::MoneyRead,
    P::OrderManage,
    P::RefundManage,
    P::PayoutApprove,
    P::TopUpSell,
    P::PayOwn,
];

const ADMIN: &[Permission] = &[
    P::OrganizationRead,
    P::OrganizationManage,
    P::MemberRead,
    P::MemberManage,
    P::ApiKeyManage,
    P::AuditRead,
    P::GridRead,
    P::GridManage,
    P::InfrastructureRead,
    P::InfrastructureManage,
    P::MeterRead,
    P::MeterManage,
    P::MeterCommand,
    P::BatchManage,
    P::InstallManage,
    P::CustomerRead,
    P::CustomerManage,
    P::AgentRead,
    P::AgentManage,
    P::ConnectionRead,
    P::ConnectionManage,
    P::TokenRedeliver,
    P::MoneyRead,
    P::OrderManage,
    P::RefundManage,
    P::PayoutApprove,
    P::TopUpSell,
    P::PayOwn,
];

const MANAGER: &[Permission] = &[
    P::OrganizationRead,
    P::MemberRead,
    P::AuditRead,
    P::GridRead,
    P::GridManage,
    P::InfrastructureRead,
    P::InfrastructureManage,
    P::MeterRead,
    P::MeterManage,
    P::MeterCommand,
    P::BatchManage,
    P::CustomerRead,
    P::CustomerManage,
    P::AgentRead,
    P::AgentManage,
    P::ConnectionRead,
    P::ConnectionManage,
    P::MoneyRead,
];

const FINANCE: &[Permission] = &[
    P::OrganizationRead,
    P::MemberRead,
    P::AuditRead,
    P::GridRead,
    P::InfrastructureRead,
    P::MeterRead,
    P::CustomerRead,
    P::AgentRead,
    P::ConnectionRead,
    P::MoneyRead,
    P::OrderManage,
    P::RefundManage,
    P::PayoutApprove,
];

const TECH: &[Permission] = &[
    P::OrganizationRead,
    P::GridRead,
    P::InfrastructureRead,
    P::InfrastructureManage,
    P::MeterRead,
    P::MeterManage,
    P::MeterCommand,
    P::InstallManage,
    P::CustomerRead,
    P::ConnectionRead,
];

const SUPPORT: &[Permission] = &[
    P::OrganizationRead,
    P::MemberRead,
    P::AuditRead,
    P::GridRead,
    P::InfrastructureRead,
    P::MeterRead,
    P::CustomerRead,
    P::CustomerManage,
    P::AgentRead,
    P::AgentManage,
    P::ConnectionRead,
    P::ConnectionManage,
    P::TokenRedeliver,
    P::MoneyRead,
];

const AGENT: &[Permission] = &[
    P::OrganizationRead,
    P::GridRead,
    P::CustomerRead,
    P::MeterRead,
    P::TopUpSell,
];

const CUSTOMER: &[Permission] = &[
    P::OrganizationRead,
    P::GridRead,
    P::CustomerRead,
    P::MeterRead,
    P::MoneyRead,
    P::PayOwn,
];

fn permissions_of(role: Role) -> &'static [Permission] {
    match role {
        Role::Superadmin => EVERYTHING,
        Role::Admin => ADMIN,
        Role::Manager => MANAGER,
        Role::Finance => FINANCE,
        Role::Tech | Role::Service => TECH,
        Role::Support | Role::Sales => SUPPORT,
        Role::Developer | Role::Partner => READS,
        Role::Agent => AGENT,
        Role::Customer => CUSTOMER,
    }
}

/// Which kind of account a principal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AccountKind {
    Member,
    Agent,
    Customer,
}

/// How the caller authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalSource {
    /// A dashboard user's JWT, resolved to one of our accounts.
    Token {
        member: Option<MemberId>,
        agent: Option<AgentId>,
        customer: Option<CustomerId>,
    },
    /// A machine API key, acting with the key's role for the member that created it.
    ApiKey(ApiKeyId),
}

/// An authenticated caller, built from our database (never from token claims).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub account_id: Option<AccountId>,
    pub kind: AccountKind,
    pub organization_id: OrganizationId,
    pub role: Role,
    /// Member of the platform organization (the operator of tiamat itself).
    pub in_platform_org: bool,
    /// The grid an agent or customer belongs to.
    pub grid_id: Option<GridId>,
    pub source: PrincipalSource,
}

/// The set of organizations a query may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantScope {
    /// Platform SUPERADMIN: every organization.
    All,
    One(OrganizationId),
}

impl TenantScope {
    pub fn allows(self, org: OrganizationId) -> bool {
        match self {
            TenantScope::All => true,
            TenantScope::One(o) => o == org,
        }
    }

    pub fn organization(self) -> Option<OrganizationId> {
        match self {
            TenantScope::All => None,
            TenantScope::One(o) => Some(o),
        }
    }
}

impl Principal {
    pub fn can(&self, p: Permission) -> bool {
        self.role.has(p)
    }

    /// The check every route starts with: 403 for a known caller without the permission.
    pub fn require(&self, p: Permission) -> Result<(), DomainError> {
        if self.can(p) {
            Ok(())
        } else {
            Err(DomainError::Forbidden(format!(
                "role {} lacks the permission {}",
                self.role,
                serde_plain_name(p)
            )))
        }
    }

    pub fn is_platform_superadmin(&self) -> bool {
        self.in_platform_org && self.role == Role::Superadmin && self.kind == AccountKind::Member
    }

    pub fn scope(&self) -> TenantScope {
        if self.is_platform_superadmin() {
            TenantScope::All
        } else {
            TenantScope::One(self.organization_id)
        }
    }

    /// The organization a new resource goes into: the caller's own, or for a platform SUPERADMIN
    /// any organization it names.
    pub fn target_org(
        &self,
        requested: Option<OrganizationId>,
    ) -> Result<OrganizationId, DomainError> {
        match requested {
            None => Ok(self.organization_id),
            Some(o) if o == self.organization_id || self.is_platform_superadmin() => Ok(o),
            // Another tenant's organization is reported as absent, never as forbidden.
            Some(_) => Err(DomainError::NotFound("organization")),
        }
    }

    pub fn member_id(&self) -> Option<MemberId> {
        match self.source {
            PrincipalSource::Token { member, .. } => member,
            PrincipalSource::ApiKey(_) => None,
        }
    }

    pub fn agent_id(&self) -> Option<AgentId> {
        match self.source {
            PrincipalSource::Token { agent, .. } => agent,
            PrincipalSource::ApiKey(_) => None,
        }
    }

    pub fn customer_id(&self) -> Option<CustomerId> {
        match self.source {
            PrincipalSource::Token { customer, .. } => customer,
            PrincipalSource::ApiKey(_) => None,
        }
    }

    pub fn api_key_id(&self) -> Option<ApiKeyId> {
        match self.source {
            PrincipalSource::ApiKey(k) => Some(k),
            PrincipalSource::Token { .. } => None,
        }
    }
}

fn serde_plain_name(p: Permission) -> String {
    format!("{p:?}")
        .chars()
        .enumerate()
        .flat_map(|(i, c)| {
            let lower = c.to_ascii_lowercase();
            if c.is_ascii_uppercase() && i > 0 {
                vec!['_', lower]
            } else {
                vec![lower]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The matrix of DESIGN.md §3 as a table: (role, permission, allowed).
    #[test]
    fn matrix_matches_the_design_table() {
        let table: &[(Role, Permission, bool)] = &[
            (Role::Superadmin, P::OrganizationCreate, true),
            (Role::Admin, P::OrganizationCreate, false),
            (Role::Admin, P::MemberManage, true),
            (Role::Admin, P::ApiKeyManage, true),
            (Role::Manager, P::GridManage, true),
            (Role::Manager, P::CustomerManage, true),
            (Role::Manager, P::AgentManage, true),
            (Role::Manager, P::MeterCommand, true),
            (Role::Manager, P::BatchManage, true),
            (Role::Admin, P::BatchManage, true),
            (Role::Superadmin, P::BatchManage, true),
            (Role::Tech, P::BatchManage, false),
            (Role::Service, P::BatchManage, false),
            (Role::Support, P::BatchManage, false),
            (Role::Finance, P::BatchManage, false),
            (Role::Developer, P::BatchManage, false),
            (Role::Manager, P::MoneyRead, true),
            (Role::Manager, P::OrderManage, false),
            (Role::Manager, P::MemberManage, false),
            (Role::Manager, P::ApiKeyManage, false),
            (Role::Finance, P::OrderManage, true),
            (Role::Finance, P::RefundManage, true),
            (Role::Finance, P::PayoutApprove, true),
            (Role::Finance, P::CustomerRead, true),
            (Role::Finance, P::CustomerManage, false),
            (Role::Finance, P::GridManage, false),
            (Role::Tech, P::InfrastructureManage, true),
            (Role::Tech, P::InstallManage, true),
            (Role::Tech, P::CustomerRead, true),
            (Role::Tech, P::GridRead, true),
            (Role::Tech, P::CustomerManage, false),
            (Role::Tech, P::MoneyRead, false),
            (Role::Service, P::MeterCommand, true),
            (Role::Support, P::CustomerManage, true),
            (Role::Support, P::TokenRedeliver, true),
            (Role::Support, P::GridManage, false),
            (Role::Sales, P::AgentManage, true),
            (Role::Sales, P::MeterCommand, false),
            (Role::Developer, P::CustomerRead, true),
            (Role::Developer, P::CustomerManage, false),
            (Role::Partner, P::GridRead, true),
            (Role::Partner, P::GridManage, false),
            (Role::Agent, P::TopUpSell, true),
            (Role::Agent, P::CustomerRead, true),
            (Role::Agent, P::CustomerManage, false),
            (Role::Agent, P::MemberRead, false),
            (Role::Customer, P::PayOwn, true),
            // Purchases and payouts: finance moves money and approves and pays payouts; support
            // re-delivers tokens but moves no money; managers only read money.
            (Role::Admin, P::PayoutApprove, true),
            (Role::Superadmin, P::PayoutApprove, true),
            (Role::Manager, P::PayoutApprove, false),
            (Role::Manager, P::RefundManage, false),
            (Role::Manager, P::TokenRedeliver, false),
            (Role::Finance, P::TokenRedeliver, false),
            (Role::Finance, P::MoneyRead, true),
            (Role::Support, P::RefundManage, false),
            (Role::Support, P::PayoutApprove, false),
            (Role::Sales, P::TokenRedeliver, true),
            (Role::Tech, P::TokenRedeliver, false),
            (Role::Service, P::MoneyRead, false),
            (Role::Developer, P::MoneyRead, true),
            (Role::Developer, P::PayoutApprove, false),
            (Role::Partner, P::RefundManage, false),
            (Role::Agent, P::MoneyRead, false),
            (Role::Agent, P::PayoutApprove, false),
            (Role::Customer, P::PayoutApprove, false),
            (Role::Customer, P::RefundManage, false),
            (Role::Customer, P::GridManage, false),
            (Role::Customer, P::AuditRead, false),
        ];
        for (role, perm, allowed) in table {
            assert_eq!(role.has(*perm), *allowed, "{role} / {perm:?}");
        }
    }

    #[test]
    fn read_only_roles_change_nothing() {
        for role in [Role::Developer, Role::Partner] {
            assert!(
                role.permissions().iter().all(|p| READS.contains(p)),
                "{role}"
            );
        }
    }

    #[test]
    fn only_superadmin_grants_superadmin() {
        assert!(Role::Superadmin.may_grant(Role::Superadmin));
        assert!(!Role::Admin.may_grant(Role::Superadmin));
        assert!(Role::Admin.may_grant(Role::Admin));
        assert!(Role::Admin.may_grant(Role::Tech));
        assert!(!Role::Manager.may_grant(Role::Admin));
        assert!(!Role::Tech.may_grant(Role::Finance));
        assert!(Role::Superadmin.may_grant(Role::Developer));
        for r in Role::ALL {
            assert!(Role::Superadmin.may_grant(r));
        }
    }

    #[test]
    fn roles_round_trip_their_names() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
        }
        assert_eq!(Role::parse("ROOT"), None);
    }

    fn principal(role: Role, platform: bool) -> Principal {
        Principal {
            account_id: Some(AccountId(1)),
            kind: AccountKind::Member,
            organization_id: OrganizationId(7),
            role,
            in_platform_org: platform,
            grid_id: None,
            source: PrincipalSource::Token {
                member: Some(MemberId(1)),
                agent: None,
                customer: None,
            },
        }
    }

    #[test]
    fn scope_is_global_only_for_platform_superadmins() {
        assert_eq!(principal(Role::Superadmin, true).scope(), TenantScope::All);
        assert_eq!(
            principal(Role::Superadmin, false).scope(),
            TenantScope::One(OrganizationId(7))
        );
        assert_eq!(
            principal(Role::Admin, true).scope(),
            TenantScope::One(OrganizationId(7))
        );
    }

    #[test]
    fn target_org_hides_other_tenants() {
        let admin = principal(Role::Admin, false);
        assert_eq!(admin.target_org(None).unwrap(), OrganizationId(7));
        assert!(matches!(
            admin.target_org(Some(OrganizationId(8))),
            Err(DomainError::NotFound(_))
        ));
        let root = principal(Role::Superadmin, true);
        assert_eq!(
            root.target_org(Some(OrganizationId(8))).unwrap(),
            OrganizationId(8)
        );
    }

    #[test]
    fn forbidden_message_names_the_permission() {
        let err = principal(Role::Developer, false)
            .require(P::GridManage)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "role DEVELOPER lacks the permission grid_manage"
        );
    }
}
