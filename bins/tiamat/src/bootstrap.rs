//! `tiamat bootstrap`: the platform organization, its first SUPERADMIN and a fresh API key.
//! Safe to run again: existing rows are reused and only a new key is issued.

use kernel::{AccountKind, Currency, DomainError, Principal, PrincipalSource, Role, TenantScope};
use orgs::people::MemberInvite;
use orgs::{AuditDraft, MemberFilter, MemberRepo, OrganizationFields, OrganizationRepo};
use serde::Serialize;

use crate::App;

#[derive(Debug, Serialize)]
pub struct Bootstrapped {
    pub organization_id: i64,
    pub member_id: i64,
    pub api_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grid_id: Option<i64>,
}

pub async fn run(
    app: &App,
    org_name: &str,
    email: &str,
    demo_grid: bool,
) -> Result<Bootstrapped, DomainError> {
    let org = match OrganizationRepo::platform(&app.db).await? {
        Some(o) => o,
        None => {
            let fields = OrganizationFields {
                name: Some(org_name.to_owned()),
                ..Default::default()
            };
            let audit = AuditDraft::system(
                "organization.bootstrapped",
                serde_json::json!({"name": org_name}),
            );
            OrganizationRepo::create(&app.db, fields, true, audit).await?
        }
    };
    let system = Principal {
        account_id: None,
        kind: AccountKind::Member,
        organization_id: org.id,
        role: Role::Superadmin,
        in_platform_org: true,
        grid_id: None,
        source: PrincipalSource::Token {
            member: None,
            agent: None,
            customer: None,
        },
    };
    let email = email.trim().to_lowercase();
    let filter = MemberFilter {
        role: None,
        search: Some(email.clone()),
    };
    let page = kernel::PageRequest {
        limit: 500,
        after_id: None,
    };
    let existing = MemberRepo::list(&app.db, TenantScope::One(org.id), filter, page)
        .await?
        .into_iter()
        .find(|m| m.email.as_deref() == Some(email.as_str()));
    let member = match existing {
        Some(m) => m,
        None => {
            let invite = MemberInvite {
                email: email.clone(),
                full_name: "Platform administrator".into(),
                role: Role::Superadmin,
                organization_id: Some(org.id),
            };
            app.state.services.members.invite(&system, invite).await?
        }
    };
    let admin = Principal {
        account_id: Some(member.account_id),
        source: PrincipalSource::Token {
            member: Some(member.id),
            agent: None,
            customer: None,
        },
        ..system
    };
    let name = format!("bootstrap {}", chrono_like_now());
    let key = app
        .state
        .services
        .api_keys
        .create(&admin, &name, Role::Superadmin, None, None)
        .await?;
    let grid_id = if demo_grid {
        Some(demo(app, &admin).await?)
    } else {
        None
    };
    Ok(Bootstrapped {
        organization_id: org.id.get(),
        member_id: member.id.get(),
        api_key: key.secret,
        grid_id,
    })
}

async fn demo(app: &App, admin: &Principal) -> Result<i64, DomainError> {
    let grids = &app.state.services.grids;
    let filter = grids::GridFilter {
        search: Some("Demo Grid".into()),
        only: None,
    };
    let found = grids
        .list(admin, filter, kernel::PageRequest::default())
        .await?;
    if let Some(g) = found.items.into_iter().find(|g| g.name == "Demo Grid") {
        return Ok(g.id.get());
    }
    let fields = grids::GridFields {
        name: Some("Demo Grid".into()),
        timezone: Some("Africa/Lagos".into()),
        currency: Some(Currency::parse("NGN").map_err(|e| DomainError::Internal(e.message))?),
        hps_tariff_minor_per_kwh: Some(25_000),
        fs_tariff_minor_per_kwh: Some(35_000),
        pv_capacity_wp: Some(60_000),
        storage_capacity_wh: Some(120_000),
        ..Default::default()
    };
    Ok(grids.create(admin, None, fields).await?.id.get())
}

fn chrono_like_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    format!("@{secs}")
}
