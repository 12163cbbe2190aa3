use std::sync::Arc;

use kernel::{DomainError, Page, PageRequest, Permission, Principal};

use crate::model::{AuditEvent, AuditFilter};
use crate::ports::AuditRepo;

/// Reads the audit trail; writes happen inside each change's own transaction.
#[derive(Clone)]
pub struct AuditService {
    repo: Arc<dyn AuditRepo>,
}

impl AuditService {
    pub fn new(repo: Arc<dyn AuditRepo>) -> Self {
        Self { repo }
    }

    pub async fn list(
        &self,
        who: &Principal,
        filter: AuditFilter,
        page: PageRequest,
    ) -> Result<Page<AuditEvent>, DomainError> {
        who.require(Permission::AuditRead)?;
        let rows = self.repo.list(who.scope(), filter, page).await?;
        Ok(Page::from_rows(rows, page, |e| e.id.get()))
    }
}
