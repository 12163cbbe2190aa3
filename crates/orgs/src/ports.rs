//! What the organization services need from the outside world.

use async_trait::async_trait;
use kernel::{
    AgentId, ApiKeyId, CustomerId, DomainError, MemberId, OrganizationId, PageRequest, Principal,
    TenantScope,
};
use uuid::Uuid;

use crate::model::*;

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait OrganizationRepo: Send + Sync {
    async fn list(
        &self,
        scope: TenantScope,
        page: PageRequest,
    ) -> Result<Vec<Organization>, DomainError>;
    async fn get(
        &self,
        scope: TenantScope,
        id: OrganizationId,
    ) -> Result<Option<Organization>, DomainError>;
    async fn platform(&self) -> Result<Option<Organization>, DomainError>;
    async fn create(
        &self,
        fields: OrganizationFields,
        is_platform: bool,
        audit: AuditDraft,
    ) -> Result<Organization, DomainError>;
    async fn update(
        &self,
        scope: TenantScope,
        id: OrganizationId,
        fields: OrganizationFields,
        audit: AuditDraft,
    ) -> Result<Option<Organization>, DomainError>;
    async fn delete(
        &self,
        scope: TenantScope,
        id: OrganizationId,
        audit: AuditDraft,
    ) -> Result<bool, DomainError>;
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait MemberRepo: Send + Sync {
    async fn list(
        &self,
        scope: TenantScope,
        filter: MemberFilter,
        page: PageRequest,
    ) -> Result<Vec<Member>, DomainError>;
    async fn get(&self, scope: TenantScope, id: MemberId) -> Result<Option<Member>, DomainError>;
    /// Conflict when a live account already has the e-mail.
    async fn create(&self, new: NewMember, audit: AuditDraft) -> Result<Member, DomainError>;
    async fn update(
        &self,
        scope: TenantScope,
        id: MemberId,
        changes: MemberChanges,
        audit: AuditDraft,
    ) -> Result<Option<Member>, DomainError>;
    /// Soft-deletes the member and its account; returns what was deleted.
    async fn delete(
        &self,
        scope: TenantScope,
        id: MemberId,
        audit: AuditDraft,
    ) -> Result<Option<Member>, DomainError>;
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait AgentRepo: Send + Sync {
    async fn list(
        &self,
        scope: TenantScope,
        filter: PeopleFilter,
        page: PageRequest,
    ) -> Result<Vec<Agent>, DomainError>;
    async fn get(&self, scope: TenantScope, id: AgentId) -> Result<Option<Agent>, DomainError>;
    /// The agent's organization is its grid's; `NotFound("grid")` when the grid is not in scope.
    async fn create(
        &self,
        scope: TenantScope,
        new: NewAgent,
        audit: AuditDraft,
    ) -> Result<Agent, DomainError>;
    async fn update(
        &self,
        scope: TenantScope,
        id: AgentId,
        changes: AgentChanges,
        audit: AuditDraft,
    ) -> Result<Option<Agent>, DomainError>;
    async fn delete(
        &self,
        scope: TenantScope,
        id: AgentId,
        audit: AuditDraft,
    ) -> Result<Option<Agent>, DomainError>;
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait CustomerRepo: Send + Sync {
    async fn list(
        &self,
        scope: TenantScope,
        filter: PeopleFilter,
        page: PageRequest,
    ) -> Result<Vec<Customer>, DomainError>;
    async fn get(
        &self,
        scope: TenantScope,
        id: CustomerId,
    ) -> Result<Option<Customer>, DomainError>;
    async fn create(
        &self,
        scope: TenantScope,
        new: NewCustomer,
        audit: AuditDraft,
    ) -> Result<Customer, DomainError>;
    async fn update(
        &self,
        scope: TenantScope,
        id: CustomerId,
        changes: CustomerChanges,
        audit: AuditDraft,
    ) -> Result<Option<Customer>, DomainError>;
    async fn delete(
        &self,
        scope: TenantScope,
        id: CustomerId,
        audit: AuditDraft,
    ) -> Result<Option<Customer>, DomainError>;
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait ApiKeyRepo: Send + Sync {
    async fn list(&self, scope: TenantScope, page: PageRequest)
    -> Result<Vec<ApiKey>, DomainError>;
    async fn get(&self, scope: TenantScope, id: ApiKeyId) -> Result<Option<ApiKey>, DomainError>;
    async fn create(&self, new: NewApiKey, audit: AuditDraft) -> Result<ApiKey, DomainError>;
    /// Sets `revoked_at`; revoking twice is a no-op that still answers the key.
    async fn revoke(
        &self,
        scope: TenantScope,
        id: ApiKeyId,
        audit: AuditDraft,
    ) -> Result<Option<ApiKey>, DomainError>;
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait AuditRepo: Send + Sync {
    async fn list(
        &self,
        scope: TenantScope,
        filter: AuditFilter,
        page: PageRequest,
    ) -> Result<Vec<AuditEvent>, DomainError>;
}

/// Resolves credentials to principals, from our own tables.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait PrincipalDirectory: Send + Sync {
    /// The live account whose identity-provider id is `auth_user_id`, as a principal.
    async fn by_auth_user(&self, auth_user_id: Uuid) -> Result<Option<Principal>, DomainError>;
    /// The key with this prefix, whatever its state.
    async fn key_by_prefix(&self, prefix: &str) -> Result<Option<StoredKey>, DomainError>;
    /// Records that the key was used just now.
    async fn mark_key_used(&self, id: ApiKeyId) -> Result<(), DomainError>;
}

/// A verified bearer token: who the identity provider says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSubject {
    pub auth_user_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRejection {
    /// Reason label for metrics and the 401 detail, e.g. `expired`.
    Invalid(&'static str),
    /// The key source could not be reached and no cached key matches.
    Unavailable,
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait TokenVerifier: Send + Sync {
    async fn verify(&self, token: &str) -> Result<TokenSubject, TokenRejection>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityError {
    /// The e-mail or phone already has a login user.
    AlreadyRegistered,
    /// The provider refused the request.
    Rejected(String),
    /// The provider is down or not reachable.
    Unavailable(String),
}

impl From<IdentityError> for DomainError {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::AlreadyRegistered => {
                DomainError::Conflict("a login with this e-mail or phone already exists".into())
            }
            IdentityError::Rejected(m) => DomainError::invalid("email", &m),
            IdentityError::Unavailable(m) => {
                DomainError::Unavailable(format!("identity provider: {m}"))
            }
        }
    }
}

/// Creates and disables login users (Supabase Auth, or a local stand-in).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait IdentityProvider: Send + Sync {
    /// Invites a staff member by e-mail; returns the new login user's id.
    async fn invite(&self, email: &str, full_name: &str) -> Result<Uuid, IdentityError>;
    /// Creates a confirmed login for an agent or customer.
    async fn create_login(
        &self,
        email: Option<String>,
        phone: Option<String>,
        full_name: String,
    ) -> Result<Uuid, IdentityError>;
    /// Stops a login user from signing in (idempotent).
    async fn disable(&self, auth_user_id: Uuid) -> Result<(), IdentityError>;
}

/// A remembered answer to an idempotent request.
#[derive(Debug, Clone, PartialEq)]
pub struct RememberedResponse {
    pub fingerprint: Vec<u8>,
    pub status: u16,
    pub body: serde_json::Value,
}

/// Stores first answers for `Idempotency-Key` (DESIGN.md §4).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    async fn recall(
        &self,
        organization: OrganizationId,
        key: &str,
    ) -> Result<Option<RememberedResponse>, DomainError>;
    /// Keeps the first answer: a concurrent duplicate that finished first wins, and is returned.
    async fn remember(
        &self,
        organization: OrganizationId,
        key: &str,
        response: RememberedResponse,
    ) -> Result<RememberedResponse, DomainError>;
}
