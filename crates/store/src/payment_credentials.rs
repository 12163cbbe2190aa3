//! Organizations' own payment-provider accounts (predecessor ADR-003), encrypted at rest.
//!
//! Each key is sealed with AES-256-GCM under `TIAMAT_PAYMENT_CREDENTIALS_KEY` (held only by the
//! application): a fresh random 96-bit nonce per value, stored in front of the ciphertext, and the
//! organization and field as associated data, so a value moved to another row or column fails to
//! open. Without the key nothing can be written (503) and stored keys cannot be used.

use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{AeadCore, Aes256Gcm, Key, Nonce};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use kernel::{DomainError, OrganizationId};
use orgs::AuditDraft;
use payments::{
    CredentialSource, CredentialStore, CredentialsSummary, CredentialsUpdate, ProviderCredentials,
};
use secrecy::{ExposeSecret, SecretString};

use crate::audit::record;
use crate::schema::{organizations, payment_provider_credentials as ppc};
use crate::{Db, StoreError};

const NONCE_BYTES: usize = 12;
const PROVIDER: &str = "FLUTTERWAVE";

/// AES-256-GCM with the configured key. `Debug` shows nothing of it.
#[derive(Clone)]
struct Sealer(Aes256Gcm);

impl Sealer {
    fn aad(org: i64, field: &str) -> String {
        format!("tiamat/payment_provider_credentials/{org}/{field}")
    }

    fn seal(&self, org: i64, field: &str, plain: &str) -> Result<Vec<u8>, DomainError> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let aad = Self::aad(org, field);
        let sealed = self
            .0
            .encrypt(
                &nonce,
                Payload {
                    msg: plain.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| DomainError::Internal("could not encrypt a credential".into()))?;
        let mut out = Vec::with_capacity(NONCE_BYTES + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    fn open(&self, org: i64, field: &str, stored: &[u8]) -> Result<SecretString, DomainError> {
        let broken = || {
            // The wrong key (rotated without re-entering the credentials) or a damaged row.
            DomainError::Unavailable(format!(
                "the stored payment credentials of organization {org} cannot be decrypted with the configured key"
            ))
        };
        if stored.len() <= NONCE_BYTES {
            return Err(broken());
        }
        let (nonce, sealed) = stored.split_at(NONCE_BYTES);
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| broken())?;
        let aad = Self::aad(org, field);
        let plain = self
            .0
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| broken())?;
        String::from_utf8(plain)
            .map(SecretString::from)
            .map_err(|_| broken())
    }
}

/// The store of organizations' own provider accounts; implements the payments ports.
#[derive(Clone)]
pub struct PaymentCredentials {
    db: Db,
    sealer: Option<Sealer>,
}

impl std::fmt::Debug for PaymentCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentCredentials")
            .field("key_configured", &self.sealer.is_some())
            .finish()
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = ppc)]
struct Row {
    public_key_encrypted: Option<Vec<u8>>,
    secret_key_encrypted: Vec<u8>,
    webhook_hash_encrypted: Option<Vec<u8>>,
    updated_at: DateTime<Utc>,
}

fn summary(org: OrganizationId, row: Option<&Row>) -> CredentialsSummary {
    match row {
        None => CredentialsSummary::platform_fallback(org),
        Some(r) => CredentialsSummary {
            organization_id: org,
            provider: PROVIDER.into(),
            configured: true,
            public_key_set: r.public_key_encrypted.is_some(),
            secret_key_set: !r.secret_key_encrypted.is_empty(),
            webhook_hash_set: r.webhook_hash_encrypted.is_some(),
            updated_at: Some(r.updated_at),
        },
    }
}

impl PaymentCredentials {
    /// `key`: the 32-byte AES-256 key; `None` disables storing and using organizations' keys.
    pub fn new(db: Db, key: Option<&[u8; 32]>) -> Self {
        Self {
            db,
            sealer: key.map(|k| Sealer(Aes256Gcm::new(&Key::<Aes256Gcm>::from(*k)))),
        }
    }

    fn sealer(&self) -> Result<&Sealer, DomainError> {
        self.sealer.as_ref().ok_or_else(|| {
            DomainError::Unavailable(
                "per-organization payment credentials need TIAMAT_PAYMENT_CREDENTIALS_KEY".into(),
            )
        })
    }

    async fn organization_exists(
        conn: &mut diesel_async::AsyncPgConnection,
        org: OrganizationId,
    ) -> Result<bool, StoreError> {
        let found: Option<i64> = organizations::table
            .filter(organizations::id.eq(org.0))
            .filter(organizations::deleted_at.is_null())
            .select(organizations::id)
            .first(conn)
            .await
            .optional()?;
        Ok(found.is_some())
    }
}

#[async_trait]
impl CredentialSource for PaymentCredentials {
    async fn credentials(
        &self,
        org: OrganizationId,
    ) -> Result<Option<ProviderCredentials>, DomainError> {
        let mut conn = self.db.conn().await?;
        let row: Option<Row> = ppc::table
            .filter(ppc::organization_id.eq(org.0))
            .select(Row::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(StoreError::from)?;
        let Some(row) = row else { return Ok(None) };
        // Keys exist but cannot be opened: never fall back to the platform account silently,
        // or this organization's payments would be taken into someone else's account.
        let sealer = self.sealer()?;
        let public_key = row
            .public_key_encrypted
            .as_deref()
            .map(|p| sealer.open(org.0, "public_key", p))
            .transpose()?
            .map(|p| p.expose_secret().to_owned());
        Ok(Some(ProviderCredentials {
            public_key,
            secret_key: sealer.open(org.0, "secret_key", &row.secret_key_encrypted)?,
            webhook_hash: row
                .webhook_hash_encrypted
                .as_deref()
                .map(|h| sealer.open(org.0, "webhook_hash", h))
                .transpose()?,
        }))
    }
}

#[async_trait]
impl CredentialStore for PaymentCredentials {
    async fn put(
        &self,
        org: OrganizationId,
        update: CredentialsUpdate,
        audit: AuditDraft,
    ) -> Result<Option<CredentialsSummary>, DomainError> {
        let sealer = self.sealer()?;
        let public_key = update
            .public_key
            .as_deref()
            .map(|p| sealer.seal(org.0, "public_key", p))
            .transpose()?;
        let secret_key = sealer.seal(org.0, "secret_key", update.secret_key.expose_secret())?;
        let webhook_hash = update
            .webhook_hash
            .as_ref()
            .map(|h| sealer.seal(org.0, "webhook_hash", h.expose_secret()))
            .transpose()?;
        let mut conn = self.db.conn().await?;
        let result = conn
            .transaction(async |c| {
                if !Self::organization_exists(c, org).await? {
                    return Ok::<_, StoreError>(None);
                }
                let now = Utc::now();
                let row: Row = diesel::insert_into(ppc::table)
                    .values((
                        ppc::organization_id.eq(org.0),
                        ppc::provider.eq(PROVIDER),
                        ppc::public_key_encrypted.eq(&public_key),
                        ppc::secret_key_encrypted.eq(&secret_key),
                        ppc::webhook_hash_encrypted.eq(&webhook_hash),
                    ))
                    .on_conflict(ppc::organization_id)
                    .do_update()
                    .set((
                        ppc::public_key_encrypted.eq(&public_key),
                        ppc::secret_key_encrypted.eq(&secret_key),
                        ppc::webhook_hash_encrypted.eq(&webhook_hash),
                        ppc::updated_at.eq(now),
                    ))
                    .returning(Row::as_returning())
                    .get_result(c)
                    .await?;
                record(c, org.0, "payment_credentials", Some(org.0), &audit).await?;
                Ok(Some(summary(org, Some(&row))))
            })
            .await?;
        Ok(result)
    }

    async fn summary(
        &self,
        org: OrganizationId,
    ) -> Result<Option<CredentialsSummary>, DomainError> {
        let mut conn = self.db.conn().await?;
        if !Self::organization_exists(&mut conn, org).await? {
            return Ok(None);
        }
        let row: Option<Row> = ppc::table
            .filter(ppc::organization_id.eq(org.0))
            .select(Row::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(StoreError::from)?;
        Ok(Some(summary(org, row.as_ref())))
    }

    async fn delete(&self, org: OrganizationId, audit: AuditDraft) -> Result<bool, DomainError> {
        let mut conn = self.db.conn().await?;
        let deleted = conn
            .transaction(async |c| {
                let n = diesel::delete(ppc::table.filter(ppc::organization_id.eq(org.0)))
                    .execute(c)
                    .await?;
                if n > 0 {
                    record(c, org.0, "payment_credentials", Some(org.0), &audit).await?;
                }
                Ok::<_, StoreError>(n > 0)
            })
            .await?;
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(k: u8) -> Sealer {
        Sealer(Aes256Gcm::new(&Key::<Aes256Gcm>::from([k; 32])))
    }

    #[test]
    fn sealed_values_open_only_for_their_organization_field_and_key() {
        let s = sealer(7);
        let a = s.seal(1, "secret_key", "FLWSECK-abc").unwrap();
        let b = s.seal(1, "secret_key", "FLWSECK-abc").unwrap();
        // A fresh nonce each time: equal secrets do not look equal at rest.
        assert_ne!(a, b);
        assert!(!String::from_utf8_lossy(&a).contains("FLWSECK"));
        assert_eq!(
            s.open(1, "secret_key", &a).unwrap().expose_secret(),
            "FLWSECK-abc"
        );
        assert!(s.open(2, "secret_key", &a).is_err());
        assert!(s.open(1, "webhook_hash", &a).is_err());
        assert!(sealer(8).open(1, "secret_key", &a).is_err());
        let mut tampered = a.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(s.open(1, "secret_key", &tampered).is_err());
        assert!(s.open(1, "secret_key", &a[..5]).is_err());
    }
}
