use actix_web::http::StatusCode;
use serde_json::json;
use tiamat_tests::{As, TestApp};

#[actix_web::test]
async fn platform_superadmin_creates_and_lists_organizations() {
    let app = TestApp::start().await;
    let r = app
        .post("/api/v1/organizations", &app.root, json!({"name": "Sunrise Power", "email": "Ops@Sunrise.test", "organization_type": "LENDER"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["name"], "Sunrise Power");
    assert_eq!(r.body["email"], "ops@sunrise.test");
    assert_eq!(r.body["organization_type"], "LENDER");
    assert_eq!(r.body["is_platform"], false);
    let id = r.body["id"].as_i64().unwrap();

    let list = app.get("/api/v1/organizations?limit=1", &app.root).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
    let cursor = list.body["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_owned();
    let next = app
        .get(
            &format!("/api/v1/organizations?limit=1&cursor={cursor}"),
            &app.root,
        )
        .await;
    assert_eq!(next.body["items"][0]["id"], id);
    assert!(next.body["next_cursor"].is_null());

    // Duplicate names conflict.
    let dup = app
        .post(
            "/api/v1/organizations",
            &app.root,
            json!({"name": "sunrise power"}),
        )
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT, "{:?}", dup.body);
}

#[actix_web::test]
async fn organization_validation_auth_permission_and_tenancy() {
    let app = TestApp::start().await;
    let a = app.organization("A").await;
    let b = app.organization("B").await;
    let (_, admin_a) = app.member(a, "ADMIN").await;
    let (_, dev_a) = app.member(a, "DEVELOPER").await;

    // 422: every problem listed.
    let bad = app
        .post(
            "/api/v1/organizations",
            &app.root,
            json!({"name": "", "email": "x", "phone": "1"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        bad.body["errors"].as_array().unwrap().len(),
        3,
        "{:?}",
        bad.body
    );
    let unknown = app
        .post(
            "/api/v1/organizations",
            &app.root,
            json!({"name": "X", "is_platform": true}),
        )
        .await;
    assert_eq!(
        unknown.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "mass assignment refused"
    );
    assert_eq!(unknown.body["errors"][0]["field"], "is_platform");

    // 401.
    assert_eq!(
        app.get("/api/v1/organizations", &As::Nobody).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.post("/api/v1/organizations", &As::Nobody, json!({"name": "Z"}))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    // 403: only platform SUPERADMINs create; a developer cannot edit.
    assert_eq!(
        app.post("/api/v1/organizations", &admin_a, json!({"name": "Z"}))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let r = app
        .patch(
            &format!("/api/v1/organizations/{a}"),
            &dev_a,
            json!({"name": "Renamed"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.body["code"], "forbidden");

    // An org admin edits its own organization...
    let r = app
        .patch(
            &format!("/api/v1/organizations/{a}"),
            &admin_a,
            json!({"name": "A Prime", "address": "Lagos"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["name"], "A Prime");
    let cleared = app
        .patch(
            &format!("/api/v1/organizations/{a}"),
            &admin_a,
            json!({"address": null}),
        )
        .await;
    assert!(cleared.body["address"].is_null());
    let r = app
        .patch(
            &format!("/api/v1/organizations/{a}"),
            &admin_a,
            json!({"name": null}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

    // ...but another tenant's is not there at all.
    assert_eq!(
        app.get(&format!("/api/v1/organizations/{b}"), &admin_a)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.patch(
            &format!("/api/v1/organizations/{b}"),
            &admin_a,
            json!({"name": "Mine"})
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    let list = app.get("/api/v1/organizations", &admin_a).await;
    let ids: Vec<i64> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![a]);
}

#[actix_web::test]
async fn deleting_an_organization_cuts_off_its_keys() {
    let app = TestApp::start().await;
    let a = app.organization("A").await;
    let key = app.key(a, "ADMIN").await;
    assert_eq!(app.get("/api/v1/me", &key).await.status, StatusCode::OK);
    assert_eq!(
        app.delete(&format!("/api/v1/organizations/{a}"), &key)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let platform = app.platform_org;
    assert_eq!(
        app.delete(&format!("/api/v1/organizations/{platform}"), &app.root)
            .await
            .status,
        StatusCode::CONFLICT
    );
    assert_eq!(
        app.delete(&format!("/api/v1/organizations/{a}"), &app.root)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get(&format!("/api/v1/organizations/{a}"), &app.root)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/api/v1/me", &key).await.status,
        StatusCode::UNAUTHORIZED
    );
}
