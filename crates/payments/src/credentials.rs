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
