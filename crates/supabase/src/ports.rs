//! The domain ports this adapter implements: token verification and login management.

use async_trait::async_trait;
use orgs::{IdentityError, IdentityProvider, TokenRejection, TokenSubject, TokenVerifier};
use uuid::Uuid;

use crate::{GoTrueAdmin, GoTrueError, JwtError, JwtVerifier};

#[async_trait]
impl TokenVerifier for JwtVerifier {
    async fn verify(&self, token: &str) -> Result<TokenSubject, TokenRejection> {
        match JwtVerifier::verify(self, token).await {
            Ok(t) => Ok(TokenSubject {
                auth_user_id: t.sub,
            }),
            Err(JwtError::KeysUnavailable) => Err(TokenRejection::Unavailable),
            Err(e) => Err(TokenRejection::Invalid(e.reason())),
        }
    }
}

impl From<GoTrueError> for IdentityError {
    fn from(e: GoTrueError) -> Self {
        match e {
            GoTrueError::AlreadyRegistered => IdentityError::AlreadyRegistered,
            GoTrueError::Rejected { message, .. } => IdentityError::Rejected(message),
            GoTrueError::Unavailable(m) => IdentityError::Unavailable(m),
        }
    }
}

#[async_trait]
impl IdentityProvider for GoTrueAdmin {
    async fn invite(&self, email: &str, full_name: &str) -> Result<Uuid, IdentityError> {
        Ok(self.invite_user_by_email(email, full_name).await?)
    }

    async fn create_login(
        &self,
        email: Option<String>,
        phone: Option<String>,
        full_name: String,
    ) -> Result<Uuid, IdentityError> {
        Ok(self
            .create_user(email.as_deref(), phone.as_deref(), &full_name)
            .await?)
    }

    async fn disable(&self, auth_user_id: Uuid) -> Result<(), IdentityError> {
        Ok(self.ban_user(auth_user_id).await?)
    }
}
