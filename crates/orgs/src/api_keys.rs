//! Machine API keys: `tmt_<12 hex>_<43 base64url>`. The first two parts are the public prefix
//! used for lookup; only the SHA-256 of the whole key is stored.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use kernel::{ApiKeyId, DomainError, Page, PageRequest, Permission, Principal, Validator};
use rand::RngCore;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::key_cache::KeyCache;
use crate::model::{ApiKey, AuditDraft, NewApiKey};
use crate::ports::ApiKeyRepo;
use kernel::Role;

const KEY_TAG: &str = "tmt";

pub struct GeneratedKey {
    pub prefix: String,
    pub full: String,
}

pub fn generate_key() -> GeneratedKey {
    let mut rng = rand::rng();
    let mut id = [0u8; 6];
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut id);
    rng.fill_bytes(&mut secret);
    let prefix = format!(
        "{KEY_TAG}_{}",
        id.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let full = format!("{prefix}_{}", URL_SAFE_NO_PAD.encode(secret));
    GeneratedKey { prefix, full }
}

/// Splits a presented key into (prefix, secret) if it has our shape.
pub fn split_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix("tmt_")?;
    let (id, secret) = rest.split_once('_')?;
    let well_formed = id.len() == 12
        && id.bytes().all(|b| b.is_ascii_hexdigit())
        && secret.len() == 43
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    well_formed.then(|| (&key[..4 + 12], secret))
}

pub fn hash_secret(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// A key as answered once at creation: the only time the secret is shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IssuedApiKey {
    #[serde(flatten)]
    pub key: ApiKey,
    /// The whole key. Store it now: it cannot be shown again.
    pub secret: String,
}

#[derive(Clone)]
pub struct ApiKeyService {
    repo: Arc<dyn ApiKeyRepo>,
    cache: KeyCache,
}

impl ApiKeyService {
    pub fn new(repo: Arc<dyn ApiKeyRepo>) -> Self {
        Self {
            repo,
            cache: KeyCache::disabled(),
        }
    }

    /// The cache the authenticator reads; revocation clears the key from it at once.
    pub fn with_key_cache(mut self, cache: KeyCache) -> Self {
        self.cache = cache;
        self
    }

    pub async fn list(
        &self,
        who: &Principal,
        page: PageRequest,
    ) -> Result<Page<ApiKey>, DomainError> {
        who.require(Permission::ApiKeyManage)?;
        let rows = self.repo.list(who.scope(), page).await?;
        Ok(Page::from_rows(rows, page, |k| k.id.get()))
    }

    pub async fn get(&self, who: &Principal, id: ApiKeyId) -> Result<ApiKey, DomainError> {
        who.require(Permission::ApiKeyManage)?;
        self.repo
            .get(who.scope(), id)
            .await?
            .ok_or(DomainError::NotFound("api key"))
    }

    pub async fn create(
        &self,
        who: &Principal,
        name: &str,
        role: Role,
        expires_at: Option<DateTime<Utc>>,
        organization: Option<kernel::OrganizationId>,
    ) -> Result<IssuedApiKey, DomainError> {
        who.require(Permission::ApiKeyManage)?;
        let mut v = Validator::new();
        v.text("name", name, 100);
        v.check(
            role.is_staff(),
            "role",
            "an API key takes a staff role, not AGENT or CUSTOMER",
        );
        v.check(
            expires_at.is_none_or(|t| t > Utc::now()),
            "expires_at",
            "must be in the future",
        );
        v.finish()?;
        if !who.role.may_grant(role) {
            return Err(DomainError::Forbidden(format!(
                "a {} cannot create a key with the role {role}",
                who.role
            )));
        }
        let organization_id = who.target_org(organization)?;
        let generated = generate_key();
        let new = NewApiKey {
            organization_id,
            name: name.trim().to_owned(),
            prefix: generated.prefix,
            secret_hash: hash_secret(&generated.full),
            role,
            created_by_account_id: who.account_id,
            expires_at,
        };
        let audit = AuditDraft::by(
            who,
            "api_key.created",
            json!({"name": new.name, "role": role}),
        );
        let key = self.repo.create(new, audit).await?;
        Ok(IssuedApiKey {
            key,
            secret: generated.full,
        })
    }

    /// Revocation takes effect on the next request: keys are checked against the store each time.
    pub async fn revoke(&self, who: &Principal, id: ApiKeyId) -> Result<ApiKey, DomainError> {
        who.require(Permission::ApiKeyManage)?;
        let audit = AuditDraft::by(who, "api_key.revoked", json!({}));
        let key = self
            .repo
            .revoke(who.scope(), id, audit)
            .await?
            .ok_or(DomainError::NotFound("api key"))?;
        self.cache.forget(&key.prefix);
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::MockApiKeyRepo;
    use kernel::{AccountId, AccountKind, MemberId, OrganizationId, PrincipalSource};

    fn member(role: Role) -> Principal {
        Principal {
            account_id: Some(AccountId(1)),
            kind: AccountKind::Member,
            organization_id: OrganizationId(5),
            role,
            in_platform_org: false,
            grid_id: None,
            source: PrincipalSource::Token {
                member: Some(MemberId(1)),
                agent: None,
                customer: None,
            },
        }
    }

    #[test]
    fn generated_keys_have_our_shape_and_differ() {
        let a = generate_key();
        let b = generate_key();
        assert_ne!(a.full, b.full);
        let (prefix, secret) = split_key(&a.full).unwrap();
        assert_eq!(prefix, a.prefix);
        assert_eq!(secret.len(), 43);
        assert!(split_key(&a.full[..a.full.len() - 1]).is_none());
    }

    #[tokio::test]
    async fn keys_store_only_a_hash_and_show_the_secret_once() {
        let mut repo = MockApiKeyRepo::new();
        repo.expect_create().returning(|new, audit| {
            assert_eq!(audit.action, "api_key.created");
            Ok(ApiKey {
                id: ApiKeyId(1),
                organization_id: new.organization_id,
                name: new.name,
                prefix: new.prefix,
                role: new.role,
                created_by_account_id: new.created_by_account_id,
                created_at: Utc::now(),
                expires_at: new.expires_at,
                revoked_at: None,
                last_used_at: None,
            })
        });
        let svc = ApiKeyService::new(Arc::new(repo));
        let issued = svc
            .create(&member(Role::Admin), "yeti", Role::Service, None, None)
            .await
            .unwrap();
        assert!(issued.secret.starts_with(&issued.key.prefix));
        assert_eq!(issued.key.organization_id, OrganizationId(5));
    }

    #[tokio::test]
    async fn nobody_mints_a_key_above_their_role() {
        let svc = ApiKeyService::new(Arc::new(MockApiKeyRepo::new()));
        let err = svc
            .create(&member(Role::Admin), "x", Role::Superadmin, None, None)
            .await
            .unwrap_err();
        assert!(matches!(err, DomainError::Forbidden(_)));
        let err = svc
            .create(&member(Role::Manager), "x", Role::Tech, None, None)
            .await
            .unwrap_err();
        assert!(
            matches!(err, DomainError::Forbidden(_)),
            "managers do not manage keys"
        );
        let err = svc
            .create(&member(Role::Admin), " ", Role::Customer, None, None)
            .await
            .unwrap_err();
        match err {
            DomainError::Validation(errs) => assert_eq!(errs.len(), 2),
            other => panic!("{other:?}"),
        }
    }
}
