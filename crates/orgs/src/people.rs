//! Members (staff), agents (vendors) and customers: each an account plus a role row.

use std::sync::Arc;

use kernel::{
    AccountKind, AgentId, CustomerId, DomainError, GridId, MemberId, OrganizationId, Page,
    PageRequest, Permission, Principal, Role, Validator,
};
use serde_json::json;
use uuid::Uuid;

use crate::model::*;
use crate::organizations::validate_contact;
use crate::ports::{AgentRepo, CustomerRepo, IdentityProvider, MemberRepo};

fn validate_person(v: &mut Validator, p: &PersonFields) {
    if let Some(name) = &p.full_name {
        v.text("full_name", name, 200);
    }
    validate_contact(v, p.email.as_ref(), p.phone.as_ref());
}

fn validate_coordinates(v: &mut Validator, f: &CustomerFields) {
    if let Some(Some(lat)) = f.latitude {
        v.check(
            (-90.0..=90.0).contains(&lat),
            "latitude",
            "must be between -90 and 90",
        );
    }
    if let Some(Some(lon)) = f.longitude {
        v.check(
            (-180.0..=180.0).contains(&lon),
            "longitude",
            "must be between -180 and 180",
        );
    }
}

fn person_changes(p: &PersonFields) -> Vec<&'static str> {
    let mut out = Vec::new();
    if p.full_name.is_some() {
        out.push("full_name");
    }
    if p.email.is_some() {
        out.push("email");
    }
    if p.phone.is_some() {
        out.push("phone");
    }
    out
}

/// Best effort: the account is already deleted here, so a login that survives cannot reach any
/// data (principals are resolved from live accounts only). The failure is logged for follow-up.
async fn disable_login(idp: &dyn IdentityProvider, auth_user_id: Option<Uuid>) {
    if let Some(id) = auth_user_id
        && let Err(e) = idp.disable(id).await
    {
        tracing::warn!(auth_user_id = %id, error = ?e, "could not disable login user; account is deleted");
    }
}

#[derive(Clone)]
pub struct MemberService {
    repo: Arc<dyn MemberRepo>,
    idp: Arc<dyn IdentityProvider>,
}

/// Input of an invitation.
#[derive(Debug, Clone)]
pub struct MemberInvite {
    pub email: String,
    pub full_name: String,
    pub role: Role,
    pub organization_id: Option<OrganizationId>,
}

impl MemberService {
    pub fn new(repo: Arc<dyn MemberRepo>, idp: Arc<dyn IdentityProvider>) -> Self {
        Self { repo, idp }
    }

    pub async fn list(
        &self,
        who: &Principal,
        filter: MemberFilter,
        page: PageRequest,
    ) -> Result<Page<Member>, DomainError> {
        who.require(Permission::MemberRead)?;
        let rows = self.repo.list(who.scope(), filter, page).await?;
        Ok(Page::from_rows(rows, page, |m| m.id.get()))
    }

    pub async fn get(&self, who: &Principal, id: MemberId) -> Result<Member, DomainError> {
        who.require(Permission::MemberRead)?;
        self.repo
            .get(who.scope(), id)
            .await?
            .ok_or(DomainError::NotFound("member"))
    }

    pub async fn invite(
        &self,
        who: &Principal,
        invite: MemberInvite,
    ) -> Result<Member, DomainError> {
        who.require(Permission::MemberManage)?;
        let mut v = Validator::new();
        v.text("full_name", &invite.full_name, 200)
            .email("email", &invite.email);
        v.check(
            invite.role.is_staff(),
            "role",
            "members take a staff role; create agents and customers separately",
        );
        v.finish()?;
        if !who.role.may_grant(invite.role) {
            return Err(DomainError::Forbidden(format!(
                "a {} cannot grant the role {}",
                who.role, invite.role
            )));
        }
        let organization_id = who.target_org(invite.organization_id)?;
        let email = invite.email.trim().to_lowercase();
        let full_name = invite.full_name.trim().to_owned();
        let auth_user_id = self.idp.invite(&email, &full_name).await?;
        let audit = AuditDraft::by(
            who,
            "member.invited",
            json!({"email": email, "role": invite.role}),
        );
        let new = NewMember {
            organization_id,
            auth_user_id: Some(auth_user_id),
            full_name,
            email,
            role: invite.role,
        };
        match self.repo.create(new, audit).await {
            Ok(m) => Ok(m),
            Err(e) => {
                // Do not leave a login behind that has no account.
                disable_login(self.idp.as_ref(), Some(auth_user_id)).await;
                Err(e)
            }
        }
    }

    pub async fn update(
        &self,
        who: &Principal,
        id: MemberId,
        changes: MemberChanges,
    ) -> Result<Member, DomainError> {
        who.require(Permission::MemberManage)?;
        let mut v = Validator::new();
        validate_person(&mut v, &changes.person);
        if let Some(Some(_)) = changes.person.email {
            v.check(
                false,
                "email",
                "a member's login e-mail cannot be changed here",
            );
        }
        if let Some(role) = changes.role {
            v.check(role.is_staff(), "role", "members take a staff role");
        }
        v.check(
            changes.training_level.is_none_or(|t| t >= 0),
            "training_level",
            "must not be negative",
        );
        v.finish()?;
        let current = self.get(who, id).await?;
        if !who.role.may_grant(current.role) {
            return Err(DomainError::Forbidden(format!(
                "a {} cannot change a {}",
                who.role, current.role
            )));
        }
        if let Some(role) = changes.role
            && !who.role.may_grant(role)
        {
            return Err(DomainError::Forbidden(format!(
                "a {} cannot grant the role {role}",
                who.role
            )));
        }
        let mut fields = person_changes(&changes.person);
        for (name, set) in [
            ("role", changes.role.is_some()),
            ("training_level", changes.training_level.is_some()),
            ("hidden", changes.hidden.is_some()),
            (
                "subscribed_to_revenue_notifications",
                changes.subscribed_to_revenue_notifications.is_some(),
            ),
            (
                "commissioning_grid_id",
                changes.commissioning_grid_id.is_some(),
            ),
        ] {
            if set {
                fields.push(name);
            }
        }
        let audit = AuditDraft::by(
            who,
            "member.updated",
            json!({"fields": fields, "role": changes.role}),
        );
        self.repo
            .update(who.scope(), id, changes, audit)
            .await?
            .ok_or(DomainError::NotFound("member"))
    }

    pub async fn delete(&self, who: &Principal, id: MemberId) -> Result<(), DomainError> {
        who.require(Permission::MemberManage)?;
        let current = self.get(who, id).await?;
        if who.member_id() == Some(id) {
            return Err(DomainError::Conflict("you cannot delete yourself".into()));
        }
        if !who.role.may_grant(current.role) {
            return Err(DomainError::Forbidden(format!(
                "a {} cannot delete a {}",
                who.role, current.role
            )));
        }
        let audit = AuditDraft::by(who, "member.deleted", json!({"email": current.email}));
        let deleted = self
            .repo
            .delete(who.scope(), id, audit)
            .await?
            .ok_or(DomainError::NotFound("member"))?;
        disable_login(self.idp.as_ref(), deleted.auth_user_id).await;
        Ok(())
    }
}

#[derive(Clone)]
pub struct AgentService {
    repo: Arc<dyn AgentRepo>,
    idp: Arc<dyn IdentityProvider>,
}

impl AgentService {
    pub fn new(repo: Arc<dyn AgentRepo>, idp: Arc<dyn IdentityProvider>) -> Self {
        Self { repo, idp }
    }

    pub async fn list(
        &self,
        who: &Principal,
        filter: PeopleFilter,
        page: PageRequest,
    ) -> Result<Page<Agent>, DomainError> {
        who.require(Permission::AgentRead)?;
        let rows = self.repo.list(who.scope(), filter, page).await?;
        Ok(Page::from_rows(rows, page, |a| a.id.get()))
    }

    pub async fn get(&self, who: &Principal, id: AgentId) -> Result<Agent, DomainError> {
        who.require(Permission::AgentRead)?;
        self.repo
            .get(who.scope(), id)
            .await?
            .ok_or(DomainError::NotFound("agent"))
    }

    pub async fn create(
        &self,
        who: &Principal,
        grid_id: GridId,
        full_name: String,
        email: Option<String>,
        phone: String,
    ) -> Result<Agent, DomainError> {
        who.require(Permission::AgentManage)?;
        let mut v = Validator::new();
        v.text("full_name", &full_name, 200).phone("phone", &phone);
        if let Some(e) = &email {
            v.email("email", e);
        }
        v.finish()?;
        let email = email.map(|e| e.trim().to_lowercase());
        let full_name = full_name.trim().to_owned();
        let auth_user_id = self
            .idp
            .create_login(email.clone(), Some(phone.clone()), full_name.clone())
            .await?;
        let audit = AuditDraft::by(
            who,
            "agent.created",
            json!({"grid_id": grid_id, "phone": phone}),
        );
        let new = NewAgent {
            grid_id,
            auth_user_id: Some(auth_user_id),
            full_name,
            email,
            phone,
        };
        match self.repo.create(who.scope(), new, audit).await {
            Ok(a) => Ok(a),
            Err(e) => {
                disable_login(self.idp.as_ref(), Some(auth_user_id)).await;
                Err(e)
            }
        }
    }

    pub async fn update(
        &self,
        who: &Principal,
        id: AgentId,
        changes: AgentChanges,
    ) -> Result<Agent, DomainError> {
        who.require(Permission::AgentManage)?;
        let mut v = Validator::new();
        validate_person(&mut v, &changes.person);
        v.check(
            !matches!(changes.person.phone, Some(None)),
            "phone",
            "an agent needs a phone number",
        );
        v.finish()?;
        let mut fields = person_changes(&changes.person);
        if changes.grid_id.is_some() {
            fields.push("grid_id");
        }
        let audit = AuditDraft::by(
            who,
            "agent.updated",
            json!({"fields": fields, "grid_id": changes.grid_id}),
        );
        self.repo
            .update(who.scope(), id, changes, audit)
            .await?
            .ok_or(DomainError::NotFound("agent"))
    }

    pub async fn delete(&self, who: &Principal, id: AgentId) -> Result<(), DomainError> {
        who.require(Permission::AgentManage)?;
        let audit = AuditDraft::by(who, "agent.deleted", json!({}));
        let deleted = self
            .repo
            .delete(who.scope(), id, audit)
            .await?
            .ok_or(DomainError::NotFound("agent"))?;
        disable_login(self.idp.as_ref(), deleted.auth_user_id).await;
        Ok(())
    }
}

#[derive(Clone)]
pub struct CustomerService {
    repo: Arc<dyn CustomerRepo>,
    idp: Arc<dyn IdentityProvider>,
}

/// Input of a new customer.
#[derive(Debug, Clone)]
pub struct CustomerDraft {
    pub grid_id: GridId,
    pub full_name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub fields: CustomerFields,
}

impl CustomerService {
    pub fn new(repo: Arc<dyn CustomerRepo>, idp: Arc<dyn IdentityProvider>) -> Self {
        Self { repo, idp }
    }

    /// Agents see their grid's customers; a customer sees only itself.
    fn narrow(who: &Principal, filter: &mut PeopleFilter) {
        match who.kind {
            AccountKind::Member => {}
            AccountKind::Agent => filter.grid_id = Some(who.grid_id.unwrap_or(GridId(-1))),
            AccountKind::Customer => {
                filter.only_customer = Some(who.customer_id().unwrap_or(CustomerId(-1)))
            }
        }
    }

    pub async fn list(
        &self,
        who: &Principal,
        mut filter: PeopleFilter,
        page: PageRequest,
    ) -> Result<Page<Customer>, DomainError> {
        who.require(Permission::CustomerRead)?;
        if who.kind == AccountKind::Agent && filter.grid_id.is_some_and(|g| Some(g) != who.grid_id)
        {
            return Ok(Page {
                items: vec![],
                next_cursor: None,
            });
        }
        Self::narrow(who, &mut filter);
        let rows = self.repo.list(who.scope(), filter, page).await?;
        Ok(Page::from_rows(rows, page, |c| c.id.get()))
    }

    pub async fn get(&self, who: &Principal, id: CustomerId) -> Result<Customer, DomainError> {
        who.require(Permission::CustomerRead)?;
        let c = self
            .repo
            .get(who.scope(), id)
            .await?
            .ok_or(DomainError::NotFound("customer"))?;
        let visible = match who.kind {
            AccountKind::Member => true,
            AccountKind::Agent => who.grid_id == Some(c.grid_id),
            AccountKind::Customer => who.customer_id() == Some(c.id),
        };
        if visible {
            Ok(c)
        } else {
            Err(DomainError::NotFound("customer"))
        }
    }

    pub async fn create(
        &self,
        who: &Principal,
        draft: CustomerDraft,
    ) -> Result<Customer, DomainError> {
        who.require(Permission::CustomerManage)?;
        let mut v = Validator::new();
        v.text("full_name", &draft.full_name, 200);
        validate_contact(&mut v, Some(&draft.email), Some(&draft.phone));
        validate_coordinates(&mut v, &draft.fields);
        v.finish()?;
        let email = draft.email.map(|e| e.trim().to_lowercase());
        let full_name = draft.full_name.trim().to_owned();
        // A customer with neither e-mail nor phone has no login; operators act for them.
        let auth_user_id = if email.is_some() || draft.phone.is_some() {
            Some(
                self.idp
                    .create_login(email.clone(), draft.phone.clone(), full_name.clone())
                    .await?,
            )
        } else {
            None
        };
        let audit = AuditDraft::by(who, "customer.created", json!({"grid_id": draft.grid_id}));
        let new = NewCustomer {
            grid_id: draft.grid_id,
            auth_user_id,
            full_name,
            email,
            phone: draft.phone,
            fields: draft.fields,
        };
        match self.repo.create(who.scope(), new, audit).await {
            Ok(c) => Ok(c),
            Err(e) => {
                disable_login(self.idp.as_ref(), auth_user_id).await;
                Err(e)
            }
        }
    }

    pub async fn update(
        &self,
        who: &Principal,
        id: CustomerId,
        changes: CustomerChanges,
    ) -> Result<Customer, DomainError> {
        who.require(Permission::CustomerManage)?;
        let mut v = Validator::new();
        validate_person(&mut v, &changes.person);
        validate_coordinates(&mut v, &changes.fields);
        v.finish()?;
        let mut fields = person_changes(&changes.person);
        if changes.grid_id.is_some() {
            fields.push("grid_id");
        }
        let audit = AuditDraft::by(
            who,
            "customer.updated",
            json!({"fields": fields, "grid_id": changes.grid_id}),
        );
        self.repo
            .update(who.scope(), id, changes, audit)
            .await?
            .ok_or(DomainError::NotFound("customer"))
    }

    pub async fn delete(&self, who: &Principal, id: CustomerId) -> Result<(), DomainError> {
        who.require(Permission::CustomerManage)?;
        let audit = AuditDraft::by(who, "customer.deleted", json!({}));
        let deleted = self
            .repo
            .delete(who.scope(), id, audit)
            .await?
            .ok_or(DomainError::NotFound("customer"))?;
        disable_login(self.idp.as_ref(), deleted.auth_user_id).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::{IdentityError, MockCustomerRepo, MockIdentityProvider, MockMemberRepo};
    use chrono::Utc;
    use kernel::{AccountId, PrincipalSource, TenantScope};

    fn staff(role: Role) -> Principal {
        Principal {
            account_id: Some(AccountId(1)),
            kind: AccountKind::Member,
            organization_id: OrganizationId(1),
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

    fn member(id: i64, role: Role, auth: Uuid) -> Member {
        Member {
            id: MemberId(id),
            account_id: AccountId(id),
            organization_id: OrganizationId(1),
            auth_user_id: Some(auth),
            full_name: "Ada".into(),
            email: Some("ada@example.com".into()),
            phone: None,
            role,
            training_level: 0,
            hidden: false,
            subscribed_to_revenue_notifications: false,
            commissioning_grid_id: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[tokio::test]
    async fn an_invite_that_fails_in_storage_disables_the_new_login() {
        let uid = Uuid::new_v4();
        let mut idp = MockIdentityProvider::new();
        idp.expect_invite().returning(move |_, _| Ok(uid));
        idp.expect_disable()
            .withf(move |id| *id == uid)
            .times(1)
            .returning(|_| Ok(()));
        let mut repo = MockMemberRepo::new();
        repo.expect_create()
            .returning(|_, _| Err(DomainError::Conflict("e-mail taken".into())));
        let svc = MemberService::new(Arc::new(repo), Arc::new(idp));
        let invite = MemberInvite {
            email: "Ada@Example.com".into(),
            full_name: "Ada".into(),
            role: Role::Tech,
            organization_id: None,
        };
        assert!(matches!(
            svc.invite(&staff(Role::Admin), invite).await,
            Err(DomainError::Conflict(_))
        ));
    }

    #[tokio::test]
    async fn admins_cannot_invite_or_touch_superadmins() {
        let mut idp = MockIdentityProvider::new();
        idp.expect_invite().never();
        let mut repo = MockMemberRepo::new();
        repo.expect_get()
            .returning(|_, id| Ok(Some(member(id.get(), Role::Superadmin, Uuid::new_v4()))));
        repo.expect_delete().never();
        repo.expect_update().never();
        let svc = MemberService::new(Arc::new(repo), Arc::new(idp));
        let invite = MemberInvite {
            email: "x@example.com".into(),
            full_name: "X".into(),
            role: Role::Superadmin,
            organization_id: None,
        };
        let admin = staff(Role::Admin);
        assert!(matches!(
            svc.invite(&admin, invite).await,
            Err(DomainError::Forbidden(_))
        ));
        assert!(matches!(
            svc.delete(&admin, MemberId(2)).await,
            Err(DomainError::Forbidden(_))
        ));
        let demote = MemberChanges {
            role: Some(Role::Tech),
            ..Default::default()
        };
        assert!(matches!(
            svc.update(&admin, MemberId(2), demote).await,
            Err(DomainError::Forbidden(_))
        ));
    }

    #[tokio::test]
    async fn deleting_a_member_disables_its_login_and_survives_provider_outage() {
        let uid = Uuid::new_v4();
        let mut idp = MockIdentityProvider::new();
        idp.expect_disable()
            .times(1)
            .returning(|_| Err(IdentityError::Unavailable("down".into())));
        let mut repo = MockMemberRepo::new();
        repo.expect_get()
            .returning(move |_, id| Ok(Some(member(id.get(), Role::Tech, uid))));
        repo.expect_delete()
            .withf(|scope, _, audit| {
                *scope == TenantScope::One(OrganizationId(1)) && audit.action == "member.deleted"
            })
            .returning(move |_, id, _| Ok(Some(member(id.get(), Role::Tech, uid))));
        let svc = MemberService::new(Arc::new(repo), Arc::new(idp));
        svc.delete(&staff(Role::Admin), MemberId(2)).await.unwrap();
    }

    #[tokio::test]
    async fn nobody_deletes_themselves() {
        let mut repo = MockMemberRepo::new();
        repo.expect_get()
            .returning(|_, id| Ok(Some(member(id.get(), Role::Admin, Uuid::new_v4()))));
        let svc = MemberService::new(Arc::new(repo), Arc::new(MockIdentityProvider::new()));
        assert!(matches!(
            svc.delete(&staff(Role::Admin), MemberId(1)).await,
            Err(DomainError::Conflict(_))
        ));
    }

    #[tokio::test]
    async fn agents_list_only_their_grid_and_customers_only_themselves() {
        let mut repo = MockCustomerRepo::new();
        repo.expect_list()
            .withf(|_, f, _| f.grid_id == Some(GridId(7)) && f.only_customer.is_none())
            .times(1)
            .returning(|_, _, _| Ok(vec![]));
        repo.expect_list()
            .withf(|_, f, _| f.only_customer == Some(CustomerId(3)))
            .times(1)
            .returning(|_, _, _| Ok(vec![]));
        let svc = CustomerService::new(Arc::new(repo), Arc::new(MockIdentityProvider::new()));
        let mut agent = staff(Role::Agent);
        agent.kind = AccountKind::Agent;
        agent.grid_id = Some(GridId(7));
        svc.list(&agent, PeopleFilter::default(), PageRequest::default())
            .await
            .unwrap();
        // Asking for another grid yields nothing, without a query.
        let other = PeopleFilter {
            grid_id: Some(GridId(8)),
            ..Default::default()
        };
        assert!(
            svc.list(&agent, other, PageRequest::default())
                .await
                .unwrap()
                .items
                .is_empty()
        );
        let mut customer = staff(Role::Customer);
        customer.kind = AccountKind::Customer;
        customer.source = PrincipalSource::Token {
            member: None,
            agent: None,
            customer: Some(CustomerId(3)),
        };
        svc.list(&customer, PeopleFilter::default(), PageRequest::default())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn customers_without_contact_get_no_login() {
        let mut idp = MockIdentityProvider::new();
        idp.expect_create_login().never();
        let mut repo = MockCustomerRepo::new();
        repo.expect_create()
            .withf(|_, new, _| new.auth_user_id.is_none())
            .returning(|_, _, _| Err(DomainError::NotFound("grid")));
        let svc = CustomerService::new(Arc::new(repo), Arc::new(idp));
        let draft = CustomerDraft {
            grid_id: GridId(1),
            full_name: "Bola".into(),
            email: None,
            phone: None,
            fields: CustomerFields::default(),
        };
        assert!(matches!(
            svc.create(&staff(Role::Manager), draft).await,
            Err(DomainError::NotFound("grid"))
        ));
    }
}
