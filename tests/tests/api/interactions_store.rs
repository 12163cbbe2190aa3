//! The command pipeline's PostgreSQL adapter (`InteractionRepo`, `ShadowRepo`), straight against
//! the database.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use kernel::{DomainError, GridId, MeterId, OrganizationId, TenantScope};
use meters::{
    AttributeValue, HistoryEntry, IntakeAction, IntakeCommit, IntakeReceipt, IntakeRequest,
    InteractionId, InteractionRepo, InteractionStatus, InteractionType, MeterShadow, Origin,
    RelayState, ReportedVia, ShadowRepo, Transition, plan_intake,
};
use orgs::{AuditDraft, CustomerRepo, NewCustomer, OrganizationFields, OrganizationRepo};
use serde_json::{Value, json};
use store::schema::meter_interactions as mi;
use tiamat_tests::TestDb;

struct Fixture {
    t: TestDb,
    db: store::Db,
    grid: GridId,
    meter: MeterId,
}

async fn raw(t: &TestDb) -> AsyncPgConnection {
    AsyncPgConnection::establish(&t.url).await.expect("connect")
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: i64,
}

/// An organization, a grid, a customer, a connection and a meter assigned to it.
async fn fixture() -> Fixture {
    let t = TestDb::new().await;
    let db = store::Db::connect(&t.url, 4).expect("pool");
    let audit = |a: &'static str| AuditDraft::system(a, json!({}));
    let org: OrganizationId = OrganizationRepo::create(
        &db,
        OrganizationFields {
            name: Some("Mini-grids Ltd".into()),
            ..Default::default()
        },
        false,
        audit("organization.created"),
    )
    .await
    .unwrap()
    .id;
    let grid = grids::GridRepo::create(
        &db,
        org,
        grids::GridFields {
            name: Some("Kisumu".into()),
            currency: Some(kernel::Currency::parse("KES").unwrap()),
            ..Default::default()
        },
        audit("grid.created"),
    )
    .await
    .unwrap()
    .id;
    let customer = CustomerRepo::create(
        &db,
        TenantScope::One(org),
        NewCustomer {
            grid_id: grid,
            auth_user_id: Some(uuid::Uuid::new_v4()),
            full_name: "Achieng".into(),
            email: None,
            phone: None,
            fields: Default::default(),
        },
        audit("customer.created"),
    )
    .await
    .unwrap();
    let mut c = raw(&t).await;
    let connection: Id = diesel::sql_query(
        "INSERT INTO connections (organization_id, grid_id, customer_id, currency) \
         VALUES ($1, $2, $3, 'KES') RETURNING id",
    )
    .bind::<diesel::sql_types::BigInt, _>(org.get())
    .bind::<diesel::sql_types::BigInt, _>(grid.get())
    .bind::<diesel::sql_types::BigInt, _>(customer.id.get())
    .get_result(&mut c)
    .await
    .unwrap();
    let meter: Id = diesel::sql_query(
        "INSERT INTO meters (organization_id, external_system, external_reference, grid_id, \
         connection_id, assigned_at, commissioned_at) \
         VALUES ($1, 'CALIN', '47003333623', $2, $3, now(), now()) \
         RETURNING id",
    )
    .bind::<diesel::sql_types::BigInt, _>(org.get())
    .bind::<diesel::sql_types::BigInt, _>(grid.get())
    .bind::<diesel::sql_types::BigInt, _>(connection.id)
    .get_result(&mut c)
    .await
    .unwrap();
    Fixture {
        t,
        db,
        grid,
        meter: MeterId(meter.id),
    }
}

/// What the intake service would commit for `req` at `now`: planned against the stored
/// unfinished interactions, with the intent applied to the stored shadow.
async fn plan(db: &store::Db, req: IntakeRequest, now: DateTime<Utc>) -> IntakeCommit {
    let existing = InteractionRepo::unfinished(db, req.meter_id).await.unwrap();
    let plan = plan_intake(&existing, &req, now).unwrap();
    let stored = ShadowRepo::get(db, req.meter_id).await.unwrap();
    let loaded = stored.as_ref().map_or(0, |s| s.version);
    let shadow = req.intent(now, None).map(|intent| {
        let mut s = stored.unwrap_or_else(|| MeterShadow::new(req.meter_id));
        s.apply_intent(intent).unwrap();
        s
    });
    IntakeCommit {
        priority: req.kind.priority(req.origin.priority_context(None)),
        request: req,
        plan,
        status: InteractionStatus::Queued,
        history: None,
        token: None,
        shadow,
        shadow_loaded_version: loaded,
        requested_by: Default::default(),
    }
}

async fn intake(
    db: &store::Db,
    meter: MeterId,
    kind: InteractionType,
    now: DateTime<Utc>,
) -> IntakeReceipt {
    let commit = plan(db, IntakeRequest::new(meter, kind, Origin::User), now).await;
    db.commit_intake(commit).await.unwrap()
}

#[derive(Queryable, Debug)]
struct Stored {
    status: String,
    superseded_by: Option<i64>,
    coalesced_requests: i32,
    history: Value,
    grid_id: Option<i64>,
    organization_id: i64,
}

async fn stored(t: &TestDb, id: InteractionId) -> Stored {
    mi::table
        .find(id.get())
        .select((
            mi::status,
            mi::superseded_by,
            mi::coalesced_requests,
            mi::history,
            mi::grid_id,
            mi::organization_id,
        ))
        .first(&mut raw(t).await)
        .await
        .unwrap()
}

async fn row_count(t: &TestDb) -> i64 {
    mi::table
        .count()
        .get_result(&mut raw(t).await)
        .await
        .unwrap()
}

#[tokio::test]
async fn an_intake_creates_a_row_that_unfinished_reads_back() {
    let f = fixture().await;
    let now = Utc::now();
    let r = intake(&f.db, f.meter, InteractionType::TurnOff, now).await;
    assert!(r.created);
    let rows = f.db.unfinished(f.meter).await.unwrap();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.id, r.interaction);
    assert_eq!(row.meter_id, f.meter);
    assert_eq!(row.kind, InteractionType::TurnOff);
    assert_eq!(row.status, InteractionStatus::Queued);
    assert_eq!(row.intended, Some(AttributeValue::Relay(RelayState::Off)));
    assert_eq!(row.expires_at, None);
    assert!(!row.parked_for_retry);
    let s = stored(&f.t, r.interaction).await;
    assert_eq!(s.grid_id, Some(f.grid.get()), "grid copied from the meter");
    assert!(s.organization_id > 0);
    assert_eq!(s.history, json!([]));
    // The intent reached the shadow, which now drifts (nothing reported yet).
    let shadow = ShadowRepo::get(&f.db, f.meter).await.unwrap().unwrap();
    assert_eq!(shadow.version, 1);
    assert_eq!(
        shadow.desired(meters::Attribute::Relay).unwrap().value,
        AttributeValue::Relay(RelayState::Off)
    );
    let drifted = f.db.drifted(f.grid, None, 10).await.unwrap();
    assert_eq!(drifted.len(), 1);
    assert_eq!(drifted[0].meter_id, f.meter);
    assert!(
        f.db.drifted(f.grid, Some(f.meter), 10)
            .await
            .unwrap()
            .is_empty(),
        "paging goes past the meter"
    );
    // A terminal row is no longer unfinished.
    f.db.transition(
        r.interaction,
        InteractionStatus::Queued,
        Transition::Cancelled,
        None,
    )
    .await
    .unwrap();
    assert!(f.db.unfinished(f.meter).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_read_joining_a_pending_read_is_coalesced_not_created() {
    let f = fixture().await;
    let now = Utc::now();
    let first = intake(&f.db, f.meter, InteractionType::ReadVoltage, now).await;
    let commit = plan(
        &f.db,
        IntakeRequest::new(f.meter, InteractionType::ReadVoltage, Origin::User),
        now,
    )
    .await;
    assert_eq!(
        commit.plan.action,
        IntakeAction::Coalesce {
            into: first.interaction
        }
    );
    let second = f.db.commit_intake(commit).await.unwrap();
    assert_eq!(second.interaction, first.interaction);
    assert!(!second.created);
    assert_eq!(row_count(&f.t).await, 1, "nothing created");
    assert_eq!(stored(&f.t, first.interaction).await.coalesced_requests, 1);
    // A read is never a shadow intent.
    assert!(ShadowRepo::get(&f.db, f.meter).await.unwrap().is_none());
}

#[tokio::test]
async fn coalescing_into_a_finished_row_is_a_conflict() {
    let f = fixture().await;
    let now = Utc::now();
    let first = intake(&f.db, f.meter, InteractionType::ReadVoltage, now).await;
    let commit = plan(
        &f.db,
        IntakeRequest::new(f.meter, InteractionType::ReadVoltage, Origin::User),
        now,
    )
    .await;
    f.db.transition(
        first.interaction,
        InteractionStatus::Queued,
        Transition::Cancelled,
        None,
    )
    .await
    .unwrap();
    let err = f.db.commit_intake(commit).await.unwrap_err();
    assert!(matches!(err, DomainError::Conflict(_)), "{err:?}");
    assert_eq!(stored(&f.t, first.interaction).await.coalesced_requests, 0);
}

#[tokio::test]
async fn a_contradicting_intent_supersedes_the_pending_command() {
    let f = fixture().await;
    let now = Utc::now();
    let off = intake(&f.db, f.meter, InteractionType::TurnOff, now).await;
    let commit = plan(
        &f.db,
        IntakeRequest::new(f.meter, InteractionType::TurnOn, Origin::User),
        now,
    )
    .await;
    assert_eq!(commit.plan.supersede, vec![off.interaction]);
    let on = f.db.commit_intake(commit).await.unwrap();
    assert!(on.created);
    let old = stored(&f.t, off.interaction).await;
    assert_eq!(old.status, "SUPERSEDED");
    assert_eq!(old.superseded_by, Some(on.interaction.get()));
    let history: Vec<HistoryEntry> = serde_json::from_value(old.history).unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].status, InteractionStatus::Queued);
    assert_eq!(history[0].code.as_deref(), Some("superseded"));
    let rows = f.db.unfinished(f.meter).await.unwrap();
    assert_eq!(
        rows.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![on.interaction]
    );
    let shadow = ShadowRepo::get(&f.db, f.meter).await.unwrap().unwrap();
    assert_eq!(shadow.version, 2);
    assert_eq!(
        shadow.desired(meters::Attribute::Relay).unwrap().value,
        AttributeValue::Relay(RelayState::On)
    );
}

#[tokio::test]
async fn an_overdue_read_is_expired_by_the_next_intake() {
    let f = fixture().await;
    let long_ago = Utc::now() - chrono::Duration::hours(1);
    let read = intake(&f.db, f.meter, InteractionType::ReadVoltage, long_ago).await;
    let commit = plan(
        &f.db,
        IntakeRequest::new(f.meter, InteractionType::ReadVoltage, Origin::User),
        Utc::now(),
    )
    .await;
    assert_eq!(commit.plan.expire, vec![read.interaction]);
    let fresh = f.db.commit_intake(commit).await.unwrap();
    assert!(fresh.created, "an expired read is not joined");
    let old = stored(&f.t, read.interaction).await;
    assert_eq!(old.status, "EXPIRED");
    assert_eq!(old.superseded_by, None);
    let rows = f.db.unfinished(f.meter).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].id, fresh.interaction);
    assert!(rows[0].expires_at.is_some());
}

#[tokio::test]
async fn a_stale_shadow_version_is_a_conflict_and_writes_nothing() {
    let f = fixture().await;
    let now = Utc::now();
    let off = intake(&f.db, f.meter, InteractionType::TurnOff, now).await;
    // Planned before the TURN_OFF's intent was saved: the shadow moved meanwhile.
    let mut commit = plan(
        &f.db,
        IntakeRequest::new(f.meter, InteractionType::TurnOn, Origin::User),
        now,
    )
    .await;
    assert_eq!(commit.plan.supersede, vec![off.interaction]);
    commit.shadow_loaded_version = 0;
    let err = f.db.commit_intake(commit.clone()).await.unwrap_err();
    assert!(matches!(err, DomainError::Conflict(_)), "{err:?}");
    assert_eq!(row_count(&f.t).await, 1, "no row created");
    assert_eq!(stored(&f.t, off.interaction).await.status, "QUEUED");
    let shadow = ShadowRepo::get(&f.db, f.meter).await.unwrap().unwrap();
    assert_eq!(shadow.version, 1);
    assert_eq!(
        shadow.desired(meters::Attribute::Relay).unwrap().value,
        AttributeValue::Relay(RelayState::Off)
    );
    // A version from the future is as stale.
    commit.shadow_loaded_version = 5;
    assert!(matches!(
        f.db.commit_intake(commit).await.unwrap_err(),
        DomainError::Conflict(_)
    ));
    assert_eq!(row_count(&f.t).await, 1);
}

#[tokio::test]
async fn shadow_saves_are_optimistic_and_keep_the_drift_flag() {
    let f = fixture().await;
    let now = Utc::now();
    let mut s = MeterShadow::new(f.meter);
    s.apply_intent(
        IntakeRequest::new(f.meter, InteractionType::TurnOn, Origin::User)
            .intent(now, None)
            .unwrap(),
    )
    .unwrap();
    f.db.save(s.clone(), 0).await.unwrap();
    // A second writer that also loaded "nothing yet" loses.
    assert!(matches!(
        f.db.save(s.clone(), 0).await.unwrap_err(),
        DomainError::Conflict(_)
    ));
    assert_eq!(f.db.drifted(f.grid, None, 10).await.unwrap().len(), 1);
    let mut loaded = ShadowRepo::get(&f.db, f.meter).await.unwrap().unwrap();
    let v = loaded.version;
    loaded.apply_reading(
        AttributeValue::Relay(RelayState::On),
        ReportedVia::External,
        now,
    );
    f.db.save(loaded.clone(), v).await.unwrap();
    assert!(f.db.drifted(f.grid, None, 10).await.unwrap().is_empty());
    // Saving from the version it has just replaced is a conflict.
    assert!(matches!(
        f.db.save(loaded, v).await.unwrap_err(),
        DomainError::Conflict(_)
    ));
    assert!(
        f.db.drifted(GridId(f.grid.get() + 1000), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn concurrent_claims_let_exactly_one_worker_win() {
    let f = fixture().await;
    let r = intake(&f.db, f.meter, InteractionType::TurnOff, Utc::now()).await;
    let claim = || {
        f.db.transition(
            r.interaction,
            InteractionStatus::Queued,
            Transition::Claim,
            None,
        )
    };
    let (a, b) = tokio::join!(claim(), claim());
    let mut outcomes = vec![a.unwrap(), b.unwrap()];
    outcomes.sort_by_key(|o| o.is_some());
    assert_eq!(outcomes, vec![None, Some(InteractionStatus::Processing)]);
    assert_eq!(stored(&f.t, r.interaction).await.status, "PROCESSING");
    // A later claim from a stale read also answers None.
    assert_eq!(claim().await.unwrap(), None);
}

#[tokio::test]
async fn a_transition_prepends_history_and_tracks_retry_parking() {
    let f = fixture().await;
    let r = intake(&f.db, f.meter, InteractionType::TurnOff, Utc::now()).await;
    let id = r.interaction;
    f.db.transition(id, InteractionStatus::Queued, Transition::Claim, None)
        .await
        .unwrap()
        .unwrap();
    let entry = |reason: &str| HistoryEntry {
        at: Utc::now(),
        status: InteractionStatus::Processing,
        reason: reason.into(),
        code: Some("E1".into()),
        is_final: false,
    };
    let to =
        f.db.transition(
            id,
            InteractionStatus::Processing,
            Transition::DeliveryFailed { retryable: true },
            Some(entry("first")),
        )
        .await
        .unwrap();
    assert_eq!(to, Some(InteractionStatus::Processing));
    assert!(f.db.unfinished(f.meter).await.unwrap()[0].parked_for_retry);
    f.db.transition(
        id,
        InteractionStatus::Processing,
        Transition::Delivered,
        Some(entry("second")),
    )
    .await
    .unwrap();
    assert!(!f.db.unfinished(f.meter).await.unwrap()[0].parked_for_retry);
    let history: Vec<HistoryEntry> =
        serde_json::from_value(stored(&f.t, id).await.history).unwrap();
    assert_eq!(
        history
            .iter()
            .map(|h| h.reason.as_str())
            .collect::<Vec<_>>(),
        vec!["second", "first"],
        "newest first"
    );
}

#[tokio::test]
async fn an_illegal_transition_is_a_conflict_and_changes_nothing() {
    let f = fixture().await;
    let r = intake(&f.db, f.meter, InteractionType::TurnOff, Utc::now()).await;
    let before = stored(&f.t, r.interaction).await;
    let err =
        f.db.transition(
            r.interaction,
            InteractionStatus::Queued,
            Transition::Acked,
            Some(HistoryEntry {
                at: Utc::now(),
                status: InteractionStatus::Queued,
                reason: "should not be written".into(),
                code: None,
                is_final: true,
            }),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, DomainError::Conflict(_)), "{err:?}");
    let after = stored(&f.t, r.interaction).await;
    assert_eq!(after.status, "QUEUED");
    assert_eq!(after.history, before.history);
}

#[tokio::test]
async fn suspended_interactions_are_listed_per_grid() {
    let f = fixture().await;
    let mut commit = plan(
        &f.db,
        IntakeRequest::new(f.meter, InteractionType::TurnOff, Origin::User),
        Utc::now(),
    )
    .await;
    commit.status = InteractionStatus::Suspended;
    commit.history = Some(HistoryEntry::hold(
        Utc::now(),
        InteractionStatus::Suspended,
        &meters::HoldReason::GridNotEnergised,
        false,
    ));
    let r = f.db.commit_intake(commit).await.unwrap();
    intake(&f.db, f.meter, InteractionType::ReadVoltage, Utc::now()).await;
    let suspended = f.db.suspended_in_grid(f.grid).await.unwrap();
    assert_eq!(
        suspended.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![r.interaction]
    );
    assert_eq!(suspended[0].status, InteractionStatus::Suspended);
    let history: Vec<HistoryEntry> =
        serde_json::from_value(stored(&f.t, r.interaction).await.history).unwrap();
    assert_eq!(history[0].code.as_deref(), Some("grid_not_energised"));
    assert!(
        f.db.suspended_in_grid(GridId(f.grid.get() + 1000))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn changes_are_announced_to_the_grid() {
    let f = fixture().await;
    let heard: Arc<Mutex<Vec<(GridId, String)>>> = Arc::default();
    let sink = heard.clone();
    let listener = store::listener::spawn(
        f.t.url.clone(),
        move |grid, payload| sink.lock().unwrap().push((grid, payload.to_string())),
        |_| {},
    );
    assert!(listener.wait_listening(Duration::from_secs(5)).await);
    let off = intake(&f.db, f.meter, InteractionType::TurnOff, Utc::now()).await;
    let on = intake(&f.db, f.meter, InteractionType::TurnOn, Utc::now()).await;
    f.db.transition(
        on.interaction,
        InteractionStatus::Queued,
        Transition::Claim,
        None,
    )
    .await
    .unwrap();
    let wanted = 4; // create OFF; create ON + OFF superseded; ON claimed
    let mut events: Vec<Value> = Vec::new();
    for _ in 0..100 {
        events = heard
            .lock()
            .unwrap()
            .iter()
            .filter(|(g, _)| *g == f.grid)
            .map(|(_, p)| serde_json::from_str::<Value>(p).unwrap())
            .filter(|e| e["type"] == "meter_interaction")
            .collect();
        if events.len() >= wanted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let summary: Vec<(String, i64, String)> = events
        .iter()
        .map(|e| {
            (
                e["operation"].as_str().unwrap().to_owned(),
                e["data"]["id"].as_i64().unwrap(),
                e["data"]["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let (off, on) = (off.interaction.get(), on.interaction.get());
    assert_eq!(
        summary,
        vec![
            ("CREATE".into(), off, "QUEUED".into()),
            ("CREATE".into(), on, "QUEUED".into()),
            ("UPDATE".into(), off, "SUPERSEDED".into()),
            ("UPDATE".into(), on, "PROCESSING".into()),
        ]
    );
    let data = &events[0]["data"];
    assert_eq!(data["meter_id"], json!(f.meter.get()));
    assert_eq!(data["kind"], json!("TURN_OFF"));
    assert!(data.get("token").is_none(), "tokens never travel");
}
