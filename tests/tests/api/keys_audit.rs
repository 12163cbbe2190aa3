use actix_web::http::StatusCode;
use serde_json::json;
use tiamat_tests::{As, TestApp};

#[actix_web::test]
async fn keys_are_listed_without_secrets_and_never_above_their_creator() {
    let app = TestApp::start().await;
    let a = app.organization("A").await;
    let b = app.organization("B").await;
    let (_, admin) = app.member(a, "ADMIN").await;
    let (_, manager) = app.member(a, "MANAGER").await;
    let kb = app
        .post(
            "/api/v1/api-keys",
            &app.root,
            json!({"name": "b", "role": "DEVELOPER", "organization_id": b}),
        )
        .await;
    let kb = kb.body["id"].as_i64().unwrap();

    let r = app
        .post(
            "/api/v1/api-keys",
            &admin,
            json!({"name": "loch", "role": "FINANCE", "expires_at": "2099-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let secret = r.body["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with(r.body["prefix"].as_str().unwrap()));
    let r = app
        .post(
            "/api/v1/api-keys",
            &admin,
            json!({"name": "root", "role": "SUPERADMIN"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app
        .post(
            "/api/v1/api-keys",
            &admin,
            json!({"name": "", "role": "AGENT"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["errors"].as_array().unwrap().len(), 2);
    assert_eq!(
        app.post(
            "/api/v1/api-keys",
            &manager,
            json!({"name": "m", "role": "TECH"})
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get("/api/v1/api-keys", &As::Nobody).await.status,
        StatusCode::UNAUTHORIZED
    );

    let list = app.get("/api/v1/api-keys", &admin).await;
    assert_eq!(list.status, StatusCode::OK);
    let text = list.body.to_string();
    assert!(
        !text.contains(&secret) && !text.contains("secret"),
        "{text}"
    );
    assert_eq!(
        app.get(&format!("/api/v1/api-keys/{kb}"), &admin)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.delete(&format!("/api/v1/api-keys/{kb}"), &admin)
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // A key acts with its role: a FINANCE key cannot manage grids.
    let finance_key = As::Key(secret);
    assert_eq!(
        app.post(
            "/api/v1/grids",
            &finance_key,
            json!({"name": "G", "currency": "NGN"})
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
}

#[actix_web::test]
async fn every_change_is_audited_and_the_trail_is_tenant_scoped() {
    let app = TestApp::start().await;
    let a = app.organization("A").await;
    let b = app.organization("B").await;
    let (_, admin_a) = app.member(a, "ADMIN").await;
    let (_, admin_b) = app.member(b, "ADMIN").await;
    let me = app.get("/api/v1/me", &admin_a).await;
    let actor = me.body["account_id"].as_i64().unwrap();

    let g = app
        .post(
            "/api/v1/grids",
            &admin_a,
            json!({"name": "G", "currency": "NGN"}),
        )
        .await
        .body["id"]
        .as_i64()
        .unwrap();
    app.patch(
        &format!("/api/v1/grids/{g}"),
        &admin_a,
        json!({"fs_tariff_minor_per_kwh": 1}),
    )
    .await;
    let c = app
        .post(
            "/api/v1/customers",
            &admin_a,
            json!({"grid_id": g, "full_name": "C"}),
        )
        .await
        .body["id"]
        .as_i64()
        .unwrap();
    app.delete(&format!("/api/v1/customers/{c}"), &admin_a)
        .await;

    let trail = app
        .get(
            &format!("/api/v1/audit-events?actor_account_id={actor}"),
            &admin_a,
        )
        .await;
    assert_eq!(trail.status, StatusCode::OK);
    let actions: Vec<_> = trail.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        actions,
        [
            "grid.created",
            "grid.updated",
            "customer.created",
            "customer.deleted"
        ]
    );
    let updated = &trail.body["items"][1];
    assert_eq!(updated["resource_type"], "grid");
    assert_eq!(updated["resource_id"], g);
    assert_eq!(
        updated["details"]["fields"],
        json!(["fs_tariff_minor_per_kwh"])
    );

    let by_resource = app
        .get(
            &format!("/api/v1/audit-events?resource_type=customer&resource_id={c}"),
            &admin_a,
        )
        .await;
    assert_eq!(by_resource.body["items"].as_array().unwrap().len(), 2);

    // B sees none of A's trail.
    let other = app
        .get("/api/v1/audit-events?resource_type=grid", &admin_b)
        .await;
    assert!(
        other.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["organization_id"] == b)
    );
    assert!(other.body["items"].as_array().unwrap().is_empty());

    let (_, tech) = app.member(a, "TECH").await;
    assert_eq!(
        app.get("/api/v1/audit-events", &tech).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get("/api/v1/audit-events", &As::Nobody).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get("/api/v1/audit-events?resource_id=x", &admin_a)
            .await
            .status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}
