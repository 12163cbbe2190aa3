use actix_web::http::StatusCode;
use serde_json::json;
use tiamat_tests::{As, TestApp};

#[actix_web::test]
async fn managers_create_and_tune_grids() {
    let app = TestApp::start().await;
    let a = app.organization("A").await;
    let (_, manager) = app.member(a, "MANAGER").await;
    let r = app
        .post(
            "/api/v1/grids",
            &manager,
            json!({"name": "Ikeja North", "currency": "NGN", "timezone": "Africa/Lagos",
                   "hps_tariff_minor_per_kwh": 25000, "fs_tariff_minor_per_kwh": 32000,
                   "pv_capacity_wp": 60000, "is_three_phase_supported": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["organization_id"], a);
    assert_eq!(r.body["currency"], "NGN");
    assert_eq!(r.body["hps_tariff_minor_per_kwh"], 25000);
    assert_eq!(r.body["is_three_phase_supported"], true);
    assert_eq!(
        r.body["is_hidden_from_reporting"], true,
        "new grids stay out of reports until told"
    );
    let id = r.body["id"].as_i64().unwrap();

    let r = app.patch(&format!("/api/v1/grids/{id}"), &manager, json!({"fs_tariff_minor_per_kwh": 33000, "timezone": "Africa/Nairobi", "latitude": 6.6})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["fs_tariff_minor_per_kwh"], 33000);
    assert_eq!(r.body["timezone"], "Africa/Nairobi");
    assert_eq!(
        r.body["hps_tariff_minor_per_kwh"], 25000,
        "untouched fields stay"
    );

    let dup = app
        .post(
            "/api/v1/grids",
            &manager,
            json!({"name": "ikeja north", "currency": "NGN"}),
        )
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);

    let found = app.get("/api/v1/grids?search=ikeja", &manager).await;
    assert_eq!(found.body["items"].as_array().unwrap().len(), 1);

    // A grid with customers cannot be deleted.
    let c = app
        .post(
            "/api/v1/customers",
            &manager,
            json!({"grid_id": id, "full_name": "C"}),
        )
        .await;
    assert_eq!(
        app.delete(&format!("/api/v1/grids/{id}"), &manager)
            .await
            .status,
        StatusCode::CONFLICT
    );
    let cid = c.body["id"].as_i64().unwrap();
    app.delete(&format!("/api/v1/customers/{cid}"), &manager)
        .await;
    assert_eq!(
        app.delete(&format!("/api/v1/grids/{id}"), &manager)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get(&format!("/api/v1/grids/{id}"), &manager)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[actix_web::test]
async fn grid_validation_auth_permission_and_tenancy() {
    let app = TestApp::start().await;
    let a = app.organization("A").await;
    let b = app.organization("B").await;
    let gb = app.grid(b, "GB").await;
    let (_, manager) = app.member(a, "MANAGER").await;
    let (_, finance) = app.member(a, "FINANCE").await;

    let r = app
        .post(
            "/api/v1/grids",
            &manager,
            json!({"name": "X", "timezone": "Lagos", "fs_tariff_minor_per_kwh": -5}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<_> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(fields, ["currency", "timezone", "fs_tariff_minor_per_kwh"]);
    let r = app
        .post(
            "/api/v1/grids",
            &manager,
            json!({"name": "X", "currency": "naira"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .post(
            "/api/v1/grids",
            &manager,
            json!({"name": "X", "currency": "NGN", "hps_tariff_minor_per_kwh": 1.5}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "money is integer minor units"
    );

    assert_eq!(
        app.get("/api/v1/grids", &As::Nobody).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.post(
            "/api/v1/grids",
            &finance,
            json!({"name": "F", "currency": "NGN"})
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );

    assert_eq!(
        app.get(&format!("/api/v1/grids/{gb}"), &manager)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.patch(
            &format!("/api/v1/grids/{gb}"),
            &manager,
            json!({"name": "Mine"})
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.delete(&format!("/api/v1/grids/{gb}"), &manager)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let r = app
        .post(
            "/api/v1/grids",
            &manager,
            json!({"name": "Into B", "currency": "NGN", "organization_id": b}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(
        app.get("/api/v1/grids", &manager).await.body["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        app.get("/api/v1/grids/not-a-number", &manager).await.status,
        StatusCode::NOT_FOUND
    );
}
