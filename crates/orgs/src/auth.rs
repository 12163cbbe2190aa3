//! Turning a presented credential into a [`Principal`], or into a reason for a 401.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use kernel::{AccountKind, ApiKeyId, Principal, PrincipalSource};
use subtle::ConstantTimeEq;

use crate::api_keys::{hash_secret, split_key};
use crate::key_cache::KeyCache;
use crate::ports::{PrincipalDirectory, TokenRejection, TokenVerifier};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    Bearer(&'a str),
    ApiKey(&'a str),
}

/// Why a request is unauthenticated. Every variant is a 401 except `Unavailable` (503).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    Missing,
    /// The token failed verification; the label says how (`expired`, `bad_signature`...).
    InvalidToken(&'static str),
    /// A valid token for a login with no live account here.
    UnknownAccount,
    MalformedKey,
    UnknownKey,
    RevokedKey,
    ExpiredKey,
    /// The key store or the token key source could not be reached.
    Unavailable,
}

impl AuthFailure {
    /// A stable label for metrics and logs.
    pub fn reason(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::InvalidToken(r) => r,
            AuthFailure::UnknownAccount => "unknown_account",
            AuthFailure::MalformedKey => "malformed_key",
            AuthFailure::UnknownKey => "unknown_key",
            AuthFailure::RevokedKey => "revoked_key",
            AuthFailure::ExpiredKey => "expired_key",
            AuthFailure::Unavailable => "unavailable",
        }
    }

    pub fn detail(self) -> &'static str {
        match self {
            AuthFailure::Missing => "send `Authorization: Bearer <token>` or `X-API-Key: <key>`",
            AuthFailure::InvalidToken(_) => "the bearer token is not valid",
            AuthFailure::UnknownAccount => "the token's user has no active account",
            AuthFailure::MalformedKey | AuthFailure::UnknownKey => "the API key is not valid",
            AuthFailure::RevokedKey => "the API key has been revoked",
            AuthFailure::ExpiredKey => "the API key has expired",
            AuthFailure::Unavailable => "authentication is temporarily unavailable",
        }
    }
}

/// `last_used_at` is written at most this often per key and process, so a busy machine client
/// costs one query per request, not two.
const KEY_TOUCH_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct Authenticator {
    tokens: Arc<dyn TokenVerifier>,
    directory: Arc<dyn PrincipalDirectory>,
    touched: Arc<Mutex<HashMap<ApiKeyId, Instant>>>,
    keys: KeyCache,
}

impl Authenticator {
    pub fn new(tokens: Arc<dyn TokenVerifier>, directory: Arc<dyn PrincipalDirectory>) -> Self {
        Self {
            tokens,
            directory,
            touched: Arc::default(),
            keys: KeyCache::disabled(),
        }
    }

    /// Shares `keys` with the services that revoke keys, so revocation clears it at once.
    pub fn with_key_cache(mut self, keys: KeyCache) -> Self {
        self.keys = keys;
        self
    }

    pub fn key_cache(&self) -> &KeyCache {
        &self.keys
    }

    pub async fn authenticate(&self, credential: Credential<'_>) -> Result<Principal, AuthFailure> {
        match credential {
            Credential::Bearer(token) => {
                let subject = self.tokens.verify(token).await.map_err(|e| match e {
                    TokenRejection::Invalid(reason) => AuthFailure::InvalidToken(reason),
                    TokenRejection::Unavailable => AuthFailure::Unavailable,
                })?;
                self.directory
                    .by_auth_user(subject.auth_user_id)
                    .await
                    .map_err(|_| AuthFailure::Unavailable)?
                    .ok_or(AuthFailure::UnknownAccount)
            }
            Credential::ApiKey(key) => self.api_key(key).await,
        }
    }

    async fn touch(&self, id: ApiKeyId) {
        let due = {
            let now = Instant::now();
            let mut touched = self.touched.lock().unwrap_or_else(|p| p.into_inner());
            match touched.get(&id) {
                Some(at) if now.duration_since(*at) < KEY_TOUCH_INTERVAL => false,
                _ => {
                    touched.insert(id, now);
                    true
                }
            }
        };
        if due {
            // Losing a usage timestamp must not fail the request.
            if let Err(e) = self.directory.mark_key_used(id).await {
                tracing::warn!(key = %id, error = %e, "could not record API key use");
            }
        }
    }

    async fn api_key(&self, key: &str) -> Result<Principal, AuthFailure> {
        let (prefix, _) = split_key(key).ok_or(AuthFailure::MalformedKey)?;
        let stored = match self.keys.get(prefix) {
            Some(k) => k,
            None => {
                let k = self
                    .directory
                    .key_by_prefix(prefix)
                    .await
                    .map_err(|_| AuthFailure::Unavailable)?
                    .ok_or(AuthFailure::UnknownKey)?;
                self.keys.put(prefix, k.clone());
                k
            }
        };
        // Compare hashes in constant time so timing reveals nothing about the stored secret.
        if !bool::from(
            hash_secret(key)
                .as_slice()
                .ct_eq(stored.secret_hash.as_slice()),
        ) {
            return Err(AuthFailure::UnknownKey);
        }
        if stored.revoked {
            return Err(AuthFailure::RevokedKey);
        }
        if stored.expires_at.is_some_and(|t| t <= Utc::now()) {
            return Err(AuthFailure::ExpiredKey);
        }
        self.touch(stored.id).await;
        Ok(Principal {
            account_id: stored.created_by_account_id,
            kind: AccountKind::Member,
            organization_id: stored.organization_id,
            role: stored.role,
            in_platform_org: stored.organization_is_platform,
            grid_id: None,
            source: PrincipalSource::ApiKey(stored.id),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api_keys::generate_key;
    use crate::model::StoredKey;
    use crate::ports::{MockPrincipalDirectory, MockTokenVerifier, TokenSubject};
    use kernel::{AccountId, ApiKeyId, MemberId, OrganizationId, Role};
    use uuid::Uuid;

    fn stored(key: &str, revoked: bool, expires_in_secs: Option<i64>) -> StoredKey {
        StoredKey {
            id: ApiKeyId(9),
            organization_id: OrganizationId(3),
            organization_is_platform: false,
            role: Role::Tech,
            secret_hash: hash_secret(key).to_vec(),
            created_by_account_id: Some(AccountId(4)),
            expires_at: expires_in_secs.map(|s| Utc::now() + chrono::Duration::seconds(s)),
            revoked,
        }
    }

    fn with_key(s: StoredKey) -> Authenticator {
        let mut dir = MockPrincipalDirectory::new();
        dir.expect_key_by_prefix()
            .returning(move |_| Ok(Some(s.clone())));
        dir.expect_mark_key_used().returning(|_| Ok(()));
        Authenticator::new(Arc::new(MockTokenVerifier::new()), Arc::new(dir))
    }

    #[tokio::test]
    async fn a_good_key_acts_with_its_role_in_its_org() {
        let key = generate_key().full;
        let p = with_key(stored(&key, false, Some(60)))
            .authenticate(Credential::ApiKey(&key))
            .await
            .unwrap();
        assert_eq!(p.role, Role::Tech);
        assert_eq!(p.organization_id, OrganizationId(3));
        assert_eq!(p.api_key_id(), Some(ApiKeyId(9)));
        assert_eq!(p.account_id, Some(AccountId(4)));
    }

    #[tokio::test]
    async fn key_use_is_recorded_once_per_interval() {
        let key = generate_key().full;
        let s = stored(&key, false, None);
        let mut dir = MockPrincipalDirectory::new();
        dir.expect_key_by_prefix()
            .returning(move |_| Ok(Some(s.clone())));
        dir.expect_mark_key_used().times(1).returning(|_| Ok(()));
        let auth = Authenticator::new(Arc::new(MockTokenVerifier::new()), Arc::new(dir));
        for _ in 0..3 {
            auth.authenticate(Credential::ApiKey(&key)).await.unwrap();
        }
    }

    #[tokio::test]
    async fn cached_keys_skip_the_store_until_forgotten() {
        let key = generate_key().full;
        let s = stored(&key, false, None);
        let mut dir = MockPrincipalDirectory::new();
        dir.expect_key_by_prefix()
            .times(2)
            .returning(move |_| Ok(Some(s.clone())));
        dir.expect_mark_key_used().returning(|_| Ok(()));
        let cache = KeyCache::new(std::time::Duration::from_secs(60));
        let auth = Authenticator::new(Arc::new(MockTokenVerifier::new()), Arc::new(dir))
            .with_key_cache(cache.clone());
        for _ in 0..3 {
            auth.authenticate(Credential::ApiKey(&key)).await.unwrap();
        }
        cache.clear();
        auth.authenticate(Credential::ApiKey(&key)).await.unwrap();
    }

    #[tokio::test]
    async fn revoked_expired_and_wrong_secrets_are_refused() {
        let key = generate_key().full;
        let auth = with_key(stored(&key, true, None));
        assert_eq!(
            auth.authenticate(Credential::ApiKey(&key)).await,
            Err(AuthFailure::RevokedKey)
        );
        let auth = with_key(stored(&key, false, Some(-1)));
        assert_eq!(
            auth.authenticate(Credential::ApiKey(&key)).await,
            Err(AuthFailure::ExpiredKey)
        );
        // Same prefix, different secret.
        let (prefix, _) = split_key(&key).unwrap();
        let forged = format!("{prefix}_{}", "A".repeat(43));
        let auth = with_key(stored(&key, false, None));
        assert_eq!(
            auth.authenticate(Credential::ApiKey(&forged)).await,
            Err(AuthFailure::UnknownKey)
        );
    }

    #[tokio::test]
    async fn malformed_keys_never_reach_the_store() {
        let mut dir = MockPrincipalDirectory::new();
        dir.expect_key_by_prefix().never();
        let auth = Authenticator::new(Arc::new(MockTokenVerifier::new()), Arc::new(dir));
        for bad in [
            "",
            "abc",
            "tmt_short",
            "sk_live_xxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        ] {
            assert_eq!(
                auth.authenticate(Credential::ApiKey(bad)).await,
                Err(AuthFailure::MalformedKey),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn tokens_resolve_through_our_accounts_only() {
        let uid = Uuid::new_v4();
        let mut tokens = MockTokenVerifier::new();
        tokens.expect_verify().returning(move |t| match t {
            "good" => Ok(TokenSubject { auth_user_id: uid }),
            "stranger" => Ok(TokenSubject {
                auth_user_id: Uuid::nil(),
            }),
            _ => Err(TokenRejection::Invalid("expired")),
        });
        let mut dir = MockPrincipalDirectory::new();
        dir.expect_by_auth_user().returning(move |sub| {
            Ok((sub == uid).then_some(Principal {
                account_id: Some(AccountId(1)),
                kind: AccountKind::Member,
                organization_id: OrganizationId(1),
                role: Role::Admin,
                in_platform_org: false,
                grid_id: None,
                source: PrincipalSource::Token {
                    member: Some(MemberId(1)),
                    agent: None,
                    customer: None,
                },
            }))
        });
        let auth = Authenticator::new(Arc::new(tokens), Arc::new(dir));
        assert_eq!(
            auth.authenticate(Credential::Bearer("good"))
                .await
                .unwrap()
                .role,
            Role::Admin
        );
        assert_eq!(
            auth.authenticate(Credential::Bearer("stranger")).await,
            Err(AuthFailure::UnknownAccount)
        );
        assert_eq!(
            auth.authenticate(Credential::Bearer("old")).await,
            Err(AuthFailure::InvalidToken("expired"))
        );
    }
}
