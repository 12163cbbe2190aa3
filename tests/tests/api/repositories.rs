//! Repository behaviour straight against PostgreSQL, below the HTTP layer.

use kernel::{AccountId, GridId, OrganizationId, PageRequest, Role, TenantScope};
use orgs::{
    ApiKeyRepo, AuditDraft, AuditFilter, AuditRepo, CustomerRepo, NewApiKey, NewCustomer,
    OrganizationFields, OrganizationRepo, PeopleFilter, PrincipalDirectory,
};
use serde_json::json;
use tiamat_tests::TestDb;

async fn db() -> (TestDb, store::Db) {
    let t = TestDb::new().await;
    let db = store::Db::connect(&t.url, 2).expect("pool");
    (t, db)
}

async fn org(db: &store::Db, name: &str) -> OrganizationId {
    let f = OrganizationFields {
        name: Some(name.into()),
        ..Default::default()
    };
    OrganizationRepo::create(
        db,
        f,
        false,
        AuditDraft::system("organization.created", json!({})),
    )
    .await
    .unwrap()
    .id
}

async fn grid(db: &store::Db, org: OrganizationId) -> GridId {
    let f = grids::GridFields {
        name: Some(format!("grid-{org}")),
        currency: Some(kernel::Currency::parse("KES").unwrap()),
        ..Default::default()
    };
    grids::GridRepo::create(db, org, f, AuditDraft::system("grid.created", json!({})))
        .await
        .unwrap()
        .id
}

fn customer(grid: GridId, name: &str) -> NewCustomer {
    NewCustomer {
        grid_id: grid,
        auth_user_id: Some(uuid::Uuid::new_v4()),
        full_name: name.into(),
        email: None,
        phone: None,
        fields: Default::default(),
    }
}

#[tokio::test]
async fn migrations_are_current_in_a_test_database() {
    let (_t, db) = db().await;
    assert!(db.ready().await.unwrap());
    assert!(
        db.migrate().await.unwrap().is_empty(),
        "nothing left to apply"
    );
}

#[tokio::test]
async fn every_query_is_scoped_by_tenant() {
    let (_t, db) = db().await;
    let a = org(&db, "A").await;
    let b = org(&db, "B").await;
    let ga = grid(&db, a).await;
    let gb = grid(&db, b).await;
    let audit = || AuditDraft::system("customer.created", json!({}));
    let ca = CustomerRepo::create(&db, TenantScope::One(a), customer(ga, "In A"), audit())
        .await
        .unwrap();
    assert_eq!(ca.organization_id, a, "organization follows the grid");
    // A cannot create on B's grid, read B's customers, or see them in lists.
    let err = CustomerRepo::create(&db, TenantScope::One(a), customer(gb, "X"), audit())
        .await
        .unwrap_err();
    assert!(matches!(err, kernel::DomainError::NotFound("grid")));
    let cb = CustomerRepo::create(&db, TenantScope::One(b), customer(gb, "In B"), audit())
        .await
        .unwrap();
    assert!(
        CustomerRepo::get(&db, TenantScope::One(a), cb.id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        CustomerRepo::get(&db, TenantScope::All, cb.id)
            .await
            .unwrap()
            .is_some()
    );
    let listed = CustomerRepo::list(
        &db,
        TenantScope::One(a),
        PeopleFilter::default(),
        PageRequest::default(),
    )
    .await
    .unwrap();
    assert_eq!(listed.iter().map(|c| c.id).collect::<Vec<_>>(), vec![ca.id]);
    let deleted = CustomerRepo::delete(&db, TenantScope::One(a), cb.id, audit())
        .await
        .unwrap();
    assert!(deleted.is_none(), "another tenant's row is untouched");
    assert!(
        CustomerRepo::get(&db, TenantScope::One(b), cb.id)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn a_change_and_its_audit_event_commit_together() {
    let (_t, db) = db().await;
    let a = org(&db, "A").await;
    let ga = grid(&db, a).await;
    let uid = uuid::Uuid::new_v4();
    let mut first = customer(ga, "One");
    first.auth_user_id = Some(uid);
    CustomerRepo::create(
        &db,
        TenantScope::One(a),
        first,
        AuditDraft::system("customer.created", json!({})),
    )
    .await
    .unwrap();
    // Same login id again: the insert fails, and no audit event may remain for it.
    let mut dup = customer(ga, "Two");
    dup.auth_user_id = Some(uid);
    let err = CustomerRepo::create(
        &db,
        TenantScope::One(a),
        dup,
        AuditDraft::system("customer.created", json!({"n": 2})),
    )
    .await;
    assert!(
        matches!(err, Err(kernel::DomainError::Conflict(_))),
        "{err:?}"
    );
    let filter = AuditFilter {
        resource_type: Some("customer".into()),
        ..Default::default()
    };
    let events = AuditRepo::list(&db, TenantScope::One(a), filter, PageRequest::default())
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].details, json!({}));
}

#[tokio::test]
async fn keys_resolve_by_prefix_and_revocation_is_idempotent() {
    let (_t, db) = db().await;
    let a = org(&db, "A").await;
    let new = NewApiKey {
        organization_id: a,
        name: "k".into(),
        prefix: "tmt_aaaaaaaaaaaa".into(),
        secret_hash: [7; 32],
        role: Role::Tech,
        created_by_account_id: None::<AccountId>,
        expires_at: None,
    };
    let key = ApiKeyRepo::create(&db, new, AuditDraft::system("api_key.created", json!({})))
        .await
        .unwrap();
    let stored = PrincipalDirectory::key_by_prefix(&db, "tmt_aaaaaaaaaaaa")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.role, Role::Tech);
    assert_eq!(stored.secret_hash, vec![7; 32]);
    assert!(!stored.revoked);
    assert!(
        PrincipalDirectory::key_by_prefix(&db, "tmt_bbbbbbbbbbbb")
            .await
            .unwrap()
            .is_none()
    );

    let revoke = || AuditDraft::system("api_key.revoked", json!({}));
    let first = ApiKeyRepo::revoke(&db, TenantScope::One(a), key.id, revoke())
        .await
        .unwrap()
        .unwrap();
    let second = ApiKeyRepo::revoke(&db, TenantScope::One(a), key.id, revoke())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        first.revoked_at, second.revoked_at,
        "revoking twice keeps the first time"
    );
    assert!(
        PrincipalDirectory::key_by_prefix(&db, "tmt_aaaaaaaaaaaa")
            .await
            .unwrap()
            .unwrap()
            .revoked
    );
    let filter = AuditFilter {
        action: Some("api_key.revoked".into()),
        ..Default::default()
    };
    assert_eq!(
        AuditRepo::list(&db, TenantScope::All, filter, PageRequest::default())
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        ApiKeyRepo::revoke(
            &db,
            TenantScope::One(OrganizationId(a.get() + 1)),
            key.id,
            revoke()
        )
        .await
        .unwrap()
        .is_none()
    );
}
