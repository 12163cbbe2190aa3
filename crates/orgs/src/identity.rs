//! The identity provider used when no Supabase project is configured: every login gets a fresh
//! id, so the whole API works without an external auth service.

use async_trait::async_trait;
use uuid::Uuid;

use crate::ports::{IdentityError, IdentityProvider};

#[derive(Debug, Default, Clone)]
pub struct LocalIdentityProvider;

#[async_trait]
impl IdentityProvider for LocalIdentityProvider {
    async fn invite(&self, _email: &str, _full_name: &str) -> Result<Uuid, IdentityError> {
        Ok(Uuid::new_v4())
    }

    async fn create_login(
        &self,
        _email: Option<String>,
        _phone: Option<String>,
        _full_name: String,
    ) -> Result<Uuid, IdentityError> {
        Ok(Uuid::new_v4())
    }

    async fn disable(&self, _auth_user_id: Uuid) -> Result<(), IdentityError> {
        Ok(())
    }
}
