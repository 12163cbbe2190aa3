//! A short-lived cache of resolved API keys, so a busy machine client costs one query per request
//! instead of two. Revocation and organization deletion clear entries at once in this process;
//! other instances learn of them through the database's notification channel, and every entry
//! expires after its TTL whatever happens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::model::StoredKey;

#[derive(Clone, Debug)]
pub struct KeyCache {
    entries: Arc<Mutex<HashMap<String, (StoredKey, Instant)>>>,
    ttl: Duration,
}

impl KeyCache {
    /// A zero TTL disables caching.
    pub fn new(ttl: Duration) -> Self {
        Self {
            entries: Arc::default(),
            ttl,
        }
    }

    pub fn disabled() -> Self {
        Self::new(Duration::ZERO)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (StoredKey, Instant)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, prefix: &str) -> Option<StoredKey> {
        if self.ttl.is_zero() {
            return None;
        }
        let mut entries = self.lock();
        match entries.get(prefix) {
            Some((key, at)) if at.elapsed() < self.ttl => Some(key.clone()),
            Some(_) => {
                entries.remove(prefix);
                None
            }
            None => None,
        }
    }

    pub fn put(&self, prefix: &str, key: StoredKey) {
        if !self.ttl.is_zero() {
            self.lock().insert(prefix.to_owned(), (key, Instant::now()));
        }
    }

    pub fn forget(&self, prefix: &str) {
        self.lock().remove(prefix);
    }

    pub fn clear(&self) {
        self.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kernel::{ApiKeyId, OrganizationId, Role};

    fn key() -> StoredKey {
        StoredKey {
            id: ApiKeyId(1),
            organization_id: OrganizationId(1),
            organization_is_platform: false,
            role: Role::Tech,
            secret_hash: vec![1; 32],
            created_by_account_id: None,
            expires_at: None,
            revoked: false,
        }
    }

    #[test]
    fn entries_expire_and_can_be_forgotten() {
        let cache = KeyCache::new(Duration::from_millis(50));
        cache.put("tmt_a", key());
        assert!(cache.get("tmt_a").is_some());
        cache.forget("tmt_a");
        assert!(cache.get("tmt_a").is_none());
        cache.put("tmt_b", key());
        std::thread::sleep(Duration::from_millis(60));
        assert!(cache.get("tmt_b").is_none(), "expired");
        cache.put("tmt_c", key());
        cache.clear();
        assert!(cache.get("tmt_c").is_none());
    }

    #[test]
    fn a_zero_ttl_caches_nothing() {
        let cache = KeyCache::disabled();
        cache.put("tmt_a", key());
        assert!(cache.get("tmt_a").is_none());
    }
}
