use actix_web::http::StatusCode;
use serde_json::json;
use tiamat_tests::{As, TestApp};

#[actix_web::test]
async fn gateways_register_idempotently_assign_and_report_state() {
    let app = TestApp::start().await;
    let a = app.organization("A").await;
    let b = app.organization("B").await;
    let ga = app.grid(a, "GA").await;
    let gb = app.grid(b, "GB").await;
    let (_, tech) = app.member(a, "TECH").await;
    let (_, tech_b) = app.member(b, "TECH").await;
    let (_, dev) = app.member(a, "DEVELOPER").await;

    let body = json!({"external_system": "CALIN", "external_reference": "DCU-001", "communication_protocol": "CALIN_V1"});
    let r = app.post("/api/v1/dcus", &tech, body.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert!(r.body["grid_id"].is_null());
    assert_eq!(r.body["meter_count"], 0);
    let id = r.body["id"].as_i64().unwrap();
    let again = app.post("/api/v1/dcus", &tech, body.clone()).await;
    assert_eq!(
        again.status,
        StatusCode::OK,
        "a repeat insert returns the same gateway"
    );
    assert_eq!(again.body["id"], id);
    let stolen = app.post("/api/v1/dcus", &tech_b, body).await;
    assert_eq!(
        stolen.status,
        StatusCode::CONFLICT,
        "another organization's serial"
    );

    let bad = app.post("/api/v1/dcus", &tech, json!({"external_system": "CHIRPSTACK", "external_reference": " ", "communication_protocol": "CALIN_V2", "latitude": 91.0})).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        bad.body["errors"].as_array().unwrap().len(),
        3,
        "{:?}",
        bad.body
    );
    assert_eq!(app.post("/api/v1/dcus", &dev, json!({"external_system": "CALIN", "external_reference": "X", "communication_protocol": "CALIN_V1"})).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.get("/api/v1/dcus", &As::Nobody).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Assign within the organization only.
    assert_eq!(
        app.post(
            &format!("/api/v1/dcus/{id}/assign"),
            &tech,
            json!({"grid_id": gb})
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    let r = app
        .post(
            &format!("/api/v1/dcus/{id}/assign"),
            &tech,
            json!({"grid_id": ga}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["grid_id"], ga);
    let listed = app.get(&format!("/api/v1/dcus?grid_id={ga}"), &dev).await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
    assert!(
        app.get("/api/v1/dcus?assigned=false", &dev).await.body["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Machine clients report state in bulk.
    let key = app.key(a, "SERVICE").await;
    let r = app.put("/api/v1/dcus/state", &key, json!({"states": [{"id": id, "is_online": true, "signal_rssi": -97, "last_seen_at": "2026-11-27T10:00:00Z"}]})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body[0]["is_online"], true);
    assert!(r.body[0]["is_online_updated_at"].is_string());
    assert_eq!(r.body[0]["signal_rssi"], -97);
    let dup = app
        .put(
            "/api/v1/dcus/state",
            &key,
            json!({"states": [{"id": id}, {"id": id}]}),
        )
        .await;
    assert_eq!(dup.status, StatusCode::UNPROCESSABLE_ENTITY);
    let other = app.post("/api/v1/dcus", &tech_b, json!({"external_system": "CALIN", "external_reference": "B-1", "communication_protocol": "CALIN_V1"})).await;
    let other = other.body["id"].as_i64().unwrap();
    assert_eq!(
        app.put(
            "/api/v1/dcus/state",
            &key,
            json!({"states": [{"id": other, "is_online": true}]})
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&format!("/api/v1/dcus/{other}"), &tech)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.patch(
            &format!("/api/v1/dcus/{other}"),
            &tech,
            json!({"nickname": "x"})
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );

    let r = app
        .patch(
            &format!("/api/v1/dcus/{id}"),
            &tech,
            json!({"nickname": "North DCU"}),
        )
        .await;
    assert_eq!(r.body["nickname"], "North DCU");
    let r = app
        .post(&format!("/api/v1/dcus/{id}/unassign"), &tech, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert!(r.body["grid_id"].is_null());
}

#[actix_web::test]
async fn mppts_and_poles_per_grid() {
    let app = TestApp::start().await;
    let a = app.organization("A").await;
    let b = app.organization("B").await;
    let ga = app.grid(a, "GA").await;
    let gb = app.grid(b, "GB").await;
    let (_, tech) = app.member(a, "TECH").await;
    let (_, finance) = app.member(a, "FINANCE").await;

    let r = app
        .post("/api/v1/mppts", &tech, json!({"grid_id": ga, "external_reference": "MPPT-1", "external_id": "vrm-288", "capacity_w": 15000, "tilt_deg": 12.5, "installed_at": "2026-01-10T00:00:00Z", "mppt_type": "PV_INVERTER"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["organization_id"], a);
    assert_eq!(r.body["mppt_type"], "PV_INVERTER");
    let mppt = r.body["id"].as_i64().unwrap();
    let bad = app.post("/api/v1/mppts", &tech, json!({"grid_id": ga, "external_reference": "", "capacity_w": -1, "azimuth_deg": 400.0})).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<_> = bad.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        fields,
        [
            "external_reference",
            "external_id",
            "installed_at",
            "capacity_w",
            "azimuth_deg"
        ]
    );
    assert_eq!(app.post("/api/v1/mppts", &tech, json!({"grid_id": gb, "external_reference": "M", "external_id": "x", "installed_at": "2026-01-10T00:00:00Z"})).await.status, StatusCode::NOT_FOUND);
    let dup = app.post("/api/v1/mppts", &tech, json!({"grid_id": ga, "external_reference": "MPPT-1", "external_id": "y", "installed_at": "2026-01-10T00:00:00Z"})).await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    assert_eq!(
        app.post("/api/v1/mppts", &finance, json!({"grid_id": ga}))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get("/api/v1/mppts", &As::Nobody).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = app
        .patch(
            &format!("/api/v1/mppts/{mppt}"),
            &tech,
            json!({"capacity_w": 16000}),
        )
        .await;
    assert_eq!(r.body["capacity_w"], 16000);
    assert_eq!(
        app.get(&format!("/api/v1/mppts?grid_id={ga}"), &finance)
            .await
            .body["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        app.delete(&format!("/api/v1/mppts/{mppt}"), &tech)
            .await
            .status,
        StatusCode::NO_CONTENT
    );

    let r = app.post("/api/v1/poles", &tech, json!({"grid_id": ga, "external_reference": "P-01", "latitude": 6.45, "longitude": 3.39})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let pole = r.body["id"].as_i64().unwrap();
    let bad = app
        .post(
            "/api/v1/poles",
            &tech,
            json!({"grid_id": ga, "external_reference": "TOO-LONG-REF", "latitude": 6.45}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        app.post(
            "/api/v1/poles",
            &tech,
            json!({"grid_id": ga, "external_reference": "P-01", "latitude": 1.0, "longitude": 1.0})
        )
        .await
        .status,
        StatusCode::CONFLICT
    );
    let (_, manager_b) = app.member(b, "MANAGER").await;
    assert_eq!(
        app.get(&format!("/api/v1/poles/{pole}"), &manager_b)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.delete(&format!("/api/v1/poles/{pole}"), &manager_b)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let r = app
        .patch(
            &format!("/api/v1/poles/{pole}"),
            &tech,
            json!({"nickname": "by the school", "grid_id": gb}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "poles do not move between grids"
    );
    assert_eq!(
        app.delete(&format!("/api/v1/poles/{pole}"), &tech)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
}
