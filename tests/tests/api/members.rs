use actix_web::http::StatusCode;
use serde_json::json;
use tiamat_tests::{As, TestApp};

#[actix_web::test]
async fn admins_invite_list_update_and_remove_members() {
    let app = TestApp::start().await;
    let a = app.organization("A").await;
    let (_, admin) = app.member(a, "ADMIN").await;
    let r = app
        .post(
            "/api/v1/members",
            &admin,
            json!({"email": "Tech@A.test", "full_name": " Tunde ", "role": "TECH"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["email"], "tech@a.test");
    assert_eq!(r.body["full_name"], "Tunde");
    assert_eq!(r.body["organization_id"], a);
    assert!(r.body["account_id"].as_i64().is_some());
    assert!(r.body["auth_user_id"].as_str().is_some());
    let id = r.body["id"].as_i64().unwrap();

    let dup = app
        .post(
            "/api/v1/members",
            &admin,
            json!({"email": "tech@a.test", "full_name": "Again", "role": "TECH"}),
        )
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT, "{:?}", dup.body);

    let list = app.get("/api/v1/members?role=TECH", &admin).await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
    let found = app.get("/api/v1/members?search=tunde", &admin).await;
    assert_eq!(found.body["items"][0]["id"], id);

    let r = app
        .patch(
            &format!("/api/v1/members/{id}"),
            &admin,
            json!({"role": "MANAGER", "training_level": 2}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["role"], "MANAGER");
    assert_eq!(r.body["training_level"], 2);

    assert_eq!(
        app.delete(&format!("/api/v1/members/{id}"), &admin)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get(&format!("/api/v1/members/{id}"), &admin)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // The e-mail is free again once the member is gone.
    let again = app
        .post(
            "/api/v1/members",
            &admin,
            json!({"email": "tech@a.test", "full_name": "T", "role": "TECH"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CREATED);
}

#[actix_web::test]
async fn roles_are_never_granted_upwards() {
    let app = TestApp::start().await;
    let a = app.organization("A").await;
    let (admin_id, admin) = app.member(a, "ADMIN").await;
    let (super_id, _) = app.member(a, "SUPERADMIN").await;
    let (_, manager) = app.member(a, "MANAGER").await;

    let r = app
        .post(
            "/api/v1/members",
            &admin,
            json!({"email": "s@a.test", "full_name": "S", "role": "SUPERADMIN"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app
        .patch(
            &format!("/api/v1/members/{super_id}"),
            &admin,
            json!({"role": "TECH"}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "an ADMIN cannot demote a SUPERADMIN"
    );
    let r = app
        .post(
            "/api/v1/members",
            &manager,
            json!({"email": "m@a.test", "full_name": "M", "role": "TECH"}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "managers do not manage members"
    );
    let r = app
        .delete(&format!("/api/v1/members/{admin_id}"), &admin)
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "nobody deletes themselves");
    // Members cannot be agents or customers.
    let r = app
        .post(
            "/api/v1/members",
            &admin,
            json!({"email": "c@a.test", "full_name": "C", "role": "CUSTOMER"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[actix_web::test]
async fn member_validation_auth_and_tenancy() {
    let app = TestApp::start().await;
    let a = app.organization("A").await;
    let b = app.organization("B").await;
    let (_, admin_a) = app.member(a, "ADMIN").await;
    let (b_member, _) = app.member(b, "TECH").await;

    let r = app
        .post(
            "/api/v1/members",
            &admin_a,
            json!({"email": "nope", "full_name": "", "role": "TECH"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        r.body["errors"].as_array().unwrap().len(),
        2,
        "{:?}",
        r.body
    );
    let r = app
        .post(
            "/api/v1/members",
            &admin_a,
            json!({"email": "x@a.test", "full_name": "X", "role": "KING"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

    assert_eq!(
        app.get("/api/v1/members", &As::Nobody).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Another tenant's member: 404 on read, change and delete; no inviting into another org.
    assert_eq!(
        app.get(&format!("/api/v1/members/{b_member}"), &admin_a)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.patch(
            &format!("/api/v1/members/{b_member}"),
            &admin_a,
            json!({"hidden": true})
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.delete(&format!("/api/v1/members/{b_member}"), &admin_a)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let r = app
        .post(
            "/api/v1/members",
            &admin_a,
            json!({"email": "y@b.test", "full_name": "Y", "role": "TECH", "organization_id": b}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let list = app.get("/api/v1/members", &admin_a).await;
    assert!(
        list.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["organization_id"] == a)
    );

    // A TECH cannot read members (403).
    let (_, tech) = app.member(a, "TECH").await;
    assert_eq!(
        app.get("/api/v1/members", &tech).await.status,
        StatusCode::FORBIDDEN
    );
}
