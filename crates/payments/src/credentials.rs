//! Per-organization payment-provider credentials (predecessor ADR-003): an organization may use
//! its own provider account; without one, the platform account is used.

use async_trait::async_trait;
use kernel::{DomainError, OrganizationId};
use secrecy::SecretString;

/// One provider account's keys. `Debug` (from `SecretString`) never shows the secrets.
#[derive(Debug, Clone)]
pub struct ProviderCredentials {
    /// Shown to browsers (inline checkout); not a secret.
    pub public_key: Option<String>,
    /// Authenticates API calls.
    pub secret_key: SecretString,
    /// The shared secret the provider sends with its webhooks (`verif-hash`).
    pub webhook_hash: Option<SecretString>,
}

/// Where an organization's own credentials are kept (the store, encrypted).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait CredentialSource: Send + Sync {
    /// The organization's own credentials; `None` means "use the platform account".
    async fn credentials(
        &self,
        org: OrganizationId,
    ) -> Result<Option<ProviderCredentials>, DomainError>;
}

/// New keys for an organization's own account (replacing any it had).
#[derive(Debug, Clone)]
pub struct CredentialsUpdate {
    pub public_key: Option<String>,
    pub secret_key: SecretString,
    pub webhook_hash: Option<SecretString>,
}

/// What an organization's own account has set; never the secrets themselves.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct CredentialsSummary {
    pub organization_id: OrganizationId,
    /// `FLUTTERWAVE`.
    pub provider: String,
    /// `false`: the platform account is used for this organization's payments.
    pub configured: bool,
    pub public_key_set: bool,
    pub secret_key_set: bool,
    pub webhook_hash_set: bool,
    pub updated_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl CredentialsSummary {
    pub fn platform_fallback(org: OrganizationId) -> Self {
        Self {
            organization_id: org,
            provider: "FLUTTERWAVE".into(),
            configured: false,
            public_key_set: false,
            secret_key_set: false,
            webhook_hash_set: false,
            updated_at: None,
        }
    }
}

/// Keeps organizations' own accounts (encrypted at rest). Writes are audited in the same
/// transaction.
#[async_trait]
pub trait CredentialStore: CredentialSource {
    /// `None`: the organization does not exist.
    async fn put(
        &self,
        org: OrganizationId,
        update: CredentialsUpdate,
        audit: orgs::AuditDraft,
    ) -> Result<Option<CredentialsSummary>, DomainError>;
    /// `None`: the organization does not exist.
    async fn summary(&self, org: OrganizationId)
    -> Result<Option<CredentialsSummary>, DomainError>;
    /// `false`: there was nothing to delete.
    async fn delete(
        &self,
        org: OrganizationId,
        audit: orgs::AuditDraft,
    ) -> Result<bool, DomainError>;
}

/// Longest key or hash accepted (Flutterwave's are well under this).
const MAX_KEY_CHARS: usize = 256;

/// Who may see and change an organization's provider account: finance roles and admins of that
/// organization (`order_manage`); another tenant's organization is 404.
#[derive(Clone)]
pub struct CredentialService {
    store: std::sync::Arc<dyn CredentialStore>,
}

impl CredentialService {
    pub fn new(store: std::sync::Arc<dyn CredentialStore>) -> Self {
        Self { store }
    }

    fn authorize(who: &kernel::Principal, org: OrganizationId) -> Result<(), DomainError> {
        if !who.scope().allows(org) {
            return Err(DomainError::NotFound("organization"));
        }
        who.require(kernel::Permission::OrderManage)
    }

    /// The webhook secret hash of the organization's own account, for authenticating its
    /// webhooks (no caller: the provider is not a principal).
    pub async fn webhook_hash(
        &self,
        org: OrganizationId,
    ) -> Result<Option<SecretString>, DomainError> {
        Ok(self
            .store
            .credentials(org)
            .await?
            .and_then(|c| c.webhook_hash))
    }

    pub async fn get(
        &self,
        who: &kernel::Principal,
        org: OrganizationId,
    ) -> Result<CredentialsSummary, DomainError> {
        Self::authorize(who, org)?;
        self.store
            .summary(org)
            .await?
            .ok_or(DomainError::NotFound("organization"))
    }

    pub async fn put(
        &self,
        who: &kernel::Principal,
        org: OrganizationId,
        update: CredentialsUpdate,
    ) -> Result<CredentialsSummary, DomainError> {
        Self::authorize(who, org)?;
        use secrecy::ExposeSecret as _;
        let printable = |s: &str| {
            !s.is_empty()
                && s.len() <= MAX_KEY_CHARS
                && s.bytes().all(|b| (0x21..0x7f).contains(&b))
        };
        let mut v = kernel::Validator::new();
        v.check(
            printable(update.secret_key.expose_secret()),
            "secret_key",
            "must be 1 to 256 printable characters without spaces",
        );
        if let Some(p) = &update.public_key {
            v.check(
                printable(p),
                "public_key",
                "must be 1 to 256 printable characters without spaces",
            );
        }
        if let Some(h) = &update.webhook_hash {
            // The hash is compared with a header, so it must survive being one.
            let h = h.expose_secret();
            v.check(
                h.len() >= 16 && printable(h),
                "webhook_hash",
                "must be 16 to 256 printable characters without spaces",
            );
        }
        v.finish()?;
        let audit = orgs::AuditDraft::by(
            who,
            "payment_credentials.put",
            serde_json::json!({
                "provider": "FLUTTERWAVE",
                "public_key_set": update.public_key.is_some(),
                "webhook_hash_set": update.webhook_hash.is_some(),
            }),
        );
        self.store
            .put(org, update, audit)
            .await?
            .ok_or(DomainError::NotFound("organization"))
    }

    pub async fn delete(
        &self,
        who: &kernel::Principal,
        org: OrganizationId,
    ) -> Result<(), DomainError> {
        Self::authorize(who, org)?;
        let audit = orgs::AuditDraft::by(
            who,
            "payment_credentials.delete",
            serde_json::json!({"provider": "FLUTTERWAVE"}),
        );
        if self.store.delete(org, audit).await? {
            Ok(())
        } else {
            Err(DomainError::NotFound("payment credentials"))
        }
    }
}
