use std::sync::Arc;

use kernel::{
    DomainError, OrganizationId, Page, PageRequest, Permission, Principal, TenantScope, Validator,
};
use serde_json::json;

use crate::key_cache::KeyCache;
use crate::model::{AuditDraft, Organization, OrganizationFields};
use crate::ports::OrganizationRepo;

#[derive(Clone)]
pub struct OrganizationService {
    repo: Arc<dyn OrganizationRepo>,
    keys: KeyCache,
}

pub(crate) fn validate_contact(
    v: &mut Validator,
    email: Option<&Option<String>>,
    phone: Option<&Option<String>>,
) {
    if let Some(Some(e)) = email {
        v.email("email", e);
    }
    if let Some(Some(p)) = phone {
        v.phone("phone", p);
    }
}

fn validate(fields: &OrganizationFields, creating: bool) -> Result<(), DomainError> {
    let mut v = Validator::new();
    match &fields.name {
        Some(n) => {
            v.text("name", n, 200);
        }
        None => {
            v.check(!creating, "name", "is required");
        }
    }
    for (field, value) in [
        ("formal_name", &fields.formal_name),
        ("address", &fields.address),
    ] {
        if let Some(Some(t)) = value {
            v.text(field, t, 500);
        }
    }
    validate_contact(&mut v, fields.email.as_ref(), fields.phone.as_ref());
    v.finish()
}

impl OrganizationService {
    pub fn new(repo: Arc<dyn OrganizationRepo>) -> Self {
        Self {
            repo,
            keys: KeyCache::disabled(),
        }
    }

    /// Deleting an organization voids its API keys; the cache forgets them at once.
    pub fn with_key_cache(mut self, keys: KeyCache) -> Self {
        self.keys = keys;
        self
    }

    pub async fn list(
        &self,
        who: &Principal,
        page: PageRequest,
    ) -> Result<Page<Organization>, DomainError> {
        who.require(Permission::OrganizationRead)?;
        let rows = self.repo.list(who.scope(), page).await?;
        Ok(Page::from_rows(rows, page, |o| o.id.get()))
    }

    pub async fn get(
        &self,
        who: &Principal,
        id: OrganizationId,
    ) -> Result<Organization, DomainError> {
        who.require(Permission::OrganizationRead)?;
        self.repo
            .get(who.scope(), id)
            .await?
            .ok_or(DomainError::NotFound("organization"))
    }

    /// Only the platform organization's SUPERADMINs create tenants.
    pub async fn create(
        &self,
        who: &Principal,
        fields: OrganizationFields,
    ) -> Result<Organization, DomainError> {
        who.require(Permission::OrganizationCreate)?;
        if !who.is_platform_superadmin() {
            return Err(DomainError::Forbidden(
                "only SUPERADMINs of the platform organization create organizations".into(),
            ));
        }
        validate(&fields, true)?;
        let audit = AuditDraft::by(who, "organization.created", json!({"name": fields.name}));
        self.repo.create(fields, false, audit).await
    }

    pub async fn update(
        &self,
        who: &Principal,
        id: OrganizationId,
        fields: OrganizationFields,
    ) -> Result<Organization, DomainError> {
        who.require(Permission::OrganizationManage)?;
        validate(&fields, false)?;
        let audit = AuditDraft::by(who, "organization.updated", changed_fields(&fields));
        self.repo
            .update(who.scope(), id, fields, audit)
            .await?
            .ok_or(DomainError::NotFound("organization"))
    }

    pub async fn delete(&self, who: &Principal, id: OrganizationId) -> Result<(), DomainError> {
        who.require(Permission::OrganizationManage)?;
        let org = self.get(who, id).await?;
        if !who.is_platform_superadmin() {
            return Err(DomainError::Forbidden(
                "only SUPERADMINs of the platform organization delete organizations".into(),
            ));
        }
        if org.is_platform {
            return Err(DomainError::Conflict(
                "the platform organization cannot be deleted".into(),
            ));
        }
        let audit = AuditDraft::by(who, "organization.deleted", json!({}));
        if self.repo.delete(TenantScope::All, id, audit).await? {
            self.keys.clear();
            Ok(())
        } else {
            Err(DomainError::NotFound("organization"))
        }
    }
}

fn changed_fields(f: &OrganizationFields) -> serde_json::Value {
    let mut names = Vec::new();
    let flags = [
        ("name", f.name.is_some()),
        ("formal_name", f.formal_name.is_some()),
        ("email", f.email.is_some()),
        ("phone", f.phone.is_some()),
        ("address", f.address.is_some()),
        ("organization_type", f.organization_type.is_some()),
    ];
    for (n, set) in flags {
        if set {
            names.push(n);
        }
    }
    json!({ "fields": names })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::MockOrganizationRepo;
    use kernel::{AccountId, AccountKind, MemberId, PrincipalSource, Role};

    fn who(role: Role, platform: bool) -> Principal {
        Principal {
            account_id: Some(AccountId(1)),
            kind: AccountKind::Member,
            organization_id: OrganizationId(1),
            role,
            in_platform_org: platform,
            grid_id: None,
            source: PrincipalSource::Token {
                member: Some(MemberId(1)),
                agent: None,
                customer: None,
            },
        }
    }

    #[tokio::test]
    async fn only_platform_superadmins_create_organizations() {
        let mut repo = MockOrganizationRepo::new();
        repo.expect_create().never();
        let svc = OrganizationService::new(Arc::new(repo));
        let fields = OrganizationFields {
            name: Some("Acme".into()),
            ..Default::default()
        };
        let err = svc
            .create(&who(Role::Superadmin, false), fields.clone())
            .await
            .unwrap_err();
        assert!(matches!(err, DomainError::Forbidden(_)));
        let err = svc
            .create(&who(Role::Admin, true), fields)
            .await
            .unwrap_err();
        assert!(matches!(err, DomainError::Forbidden(_)));
    }

    #[tokio::test]
    async fn creation_validates_everything_at_once() {
        let svc = OrganizationService::new(Arc::new(MockOrganizationRepo::new()));
        let fields = OrganizationFields {
            name: None,
            email: Some(Some("nope".into())),
            phone: Some(Some("123".into())),
            ..Default::default()
        };
        match svc
            .create(&who(Role::Superadmin, true), fields)
            .await
            .unwrap_err()
        {
            DomainError::Validation(errs) => assert_eq!(errs.len(), 3),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn updates_are_scoped_to_the_callers_tenant() {
        let mut repo = MockOrganizationRepo::new();
        repo.expect_update()
            .withf(|scope, id, _, audit| {
                *scope == TenantScope::One(OrganizationId(1))
                    && *id == OrganizationId(2)
                    && audit.action == "organization.updated"
            })
            .returning(|_, _, _, _| Ok(None));
        let svc = OrganizationService::new(Arc::new(repo));
        let fields = OrganizationFields {
            name: Some("Other".into()),
            ..Default::default()
        };
        let err = svc
            .update(&who(Role::Admin, false), OrganizationId(2), fields)
            .await
            .unwrap_err();
        assert!(matches!(err, DomainError::NotFound("organization")));
    }
}
