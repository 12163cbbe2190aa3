use actix_web::http::StatusCode;
use serde_json::{Value, json};
use tiamat_tests::{As, TestApp};

struct Site {
    org: i64,
    grid: i64,
    customer: i64,
    manager: As,
}

async fn site(app: &TestApp, name: &str) -> Site {
    let org = app.organization(name).await;
    let grid = app.grid(org, &format!("{name} grid")).await;
    let (_, manager) = app.member(org, "MANAGER").await;
    let c = app.post("/api/v1/customers", &manager, json!({"grid_id": grid, "full_name": format!("{name} customer"), "phone": "+2348055500001"})).await;
    assert_eq!(c.status, StatusCode::CREATED, "{:?}", c.body);
    Site {
        org,
        grid,
        customer: c.body["id"].as_i64().unwrap(),
        manager,
    }
}

async fn connection(app: &TestApp, s: &Site, meters: Value) -> i64 {
    let r = app
        .post(
            "/api/v1/connections",
            &s.manager,
            json!({"customer_id": s.customer, "requested_meters": meters, "is_residential": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    r.body["id"].as_i64().unwrap()
}

async fn meter(app: &TestApp, who: &As, serial: &str, body: Value) -> i64 {
    let mut b = json!({"external_system": "CALIN", "external_reference": serial});
    if let (Some(obj), Value::Object(extra)) = (b.as_object_mut(), body) {
        obj.extend(extra);
    }
    let r = app.post("/api/v1/meters", who, b).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    r.body["id"].as_i64().unwrap()
}

#[actix_web::test]
async fn connections_keep_the_customers_fee_total() {
    let app = TestApp::start().await;
    let s = site(&app, "A").await;
    let other = site(&app, "B").await;
    let meters = json!([{"meter_type": "HPS", "meter_phase": "SINGLE_PHASE", "fee": 500000}, {"meter_type": "FS", "meter_phase": "THREE_PHASE", "fee": 1500000}]);
    let r = app
        .post("/api/v1/connections", &s.manager, json!({"customer_id": s.customer, "upload_uuid": "ep-123", "requested_meters": meters, "document_type": "NATIONAL_ID", "women_impacted": 3}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["grid_id"], s.grid);
    assert_eq!(r.body["currency"], "NGN");
    assert_eq!(r.body["total_fee"], 2000000);
    assert_eq!(r.body["requested_meters"].as_array().unwrap().len(), 2);
    let id = r.body["id"].as_i64().unwrap();
    let customer = app
        .get(&format!("/api/v1/customers/{}", s.customer), &s.manager)
        .await;
    assert_eq!(customer.body["total_connection_fee"], 2000000);

    let dup = app
        .post(
            "/api/v1/connections",
            &s.manager,
            json!({"customer_id": s.customer, "upload_uuid": "ep-123"}),
        )
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);

    let r = app.put(&format!("/api/v1/connections/{id}/requested-meters"), &s.manager, json!({"requested_meters": [{"meter_type": "HPS", "meter_phase": "SINGLE_PHASE", "fee": 700000}]})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["total_fee"], 700000);
    let customer = app
        .get(&format!("/api/v1/customers/{}", s.customer), &s.manager)
        .await;
    assert_eq!(
        customer.body["total_connection_fee"], 700000,
        "the total moved by the difference"
    );

    let bad = app.post("/api/v1/connections", &s.manager, json!({"customer_id": s.customer, "women_impacted": -1, "requested_meters": [{"meter_type": "HPS", "meter_phase": "SINGLE_PHASE", "fee": -5}]})).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<_> = bad.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(fields, ["women_impacted", "requested_meters[0].fee"]);
    let (_, tech) = app.member(s.org, "TECH").await;
    assert_eq!(
        app.post(
            "/api/v1/connections",
            &tech,
            json!({"customer_id": s.customer})
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get("/api/v1/connections", &tech).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.get("/api/v1/connections", &As::Nobody).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.post(
            "/api/v1/connections",
            &s.manager,
            json!({"customer_id": other.customer})
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&format!("/api/v1/connections/{id}"), &other.manager)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.patch(
            &format!("/api/v1/connections/{id}"),
            &other.manager,
            json!({"is_public": true})
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    let r = app
        .patch(
            &format!("/api/v1/connections/{id}"),
            &s.manager,
            json!({"is_commercial": true, "document_type": null}),
        )
        .await;
    assert_eq!(r.body["is_commercial"], true);
    assert!(r.body["document_type"].is_null());
    assert_eq!(
        app.get(
            &format!("/api/v1/connections?customer_id={}", s.customer),
            &s.manager
        )
        .await
        .body["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[actix_web::test]
async fn meters_move_from_inventory_to_a_connection_and_back() {
    let app = TestApp::start().await;
    let s = site(&app, "A").await;
    let other = site(&app, "B").await;
    let conn = connection(&app, &s, json!([])).await;
    let pole = app.post("/api/v1/poles", &s.manager, json!({"grid_id": s.grid, "external_reference": "P1", "latitude": 6.5, "longitude": 3.4})).await;
    let pole = pole.body["id"].as_i64().unwrap();
    let gw = app.post("/api/v1/dcus", &s.manager, json!({"external_system": "CHIRPSTACK", "external_reference": "eui-aa", "communication_protocol": "CALIN_LORAWAN"})).await;
    let gw = gw.body["id"].as_i64().unwrap();
    app.post(
        &format!("/api/v1/dcus/{gw}/assign"),
        &s.manager,
        json!({"grid_id": s.grid}),
    )
    .await;

    let m = meter(
        &app,
        &s.manager,
        "47003333623",
        json!({"meter_type": "HPS"}),
    )
    .await;
    let again = app
        .post(
            "/api/v1/meters",
            &s.manager,
            json!({"external_system": "CALIN", "external_reference": "47003333623"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "idempotent insert");
    assert_eq!(again.body["id"], m);
    assert_eq!(
        app.post(
            "/api/v1/meters",
            &other.manager,
            json!({"external_system": "CALIN", "external_reference": "47003333623"})
        )
        .await
        .status,
        StatusCode::CONFLICT
    );
    assert_eq!(
        app.post(
            "/api/v1/meters",
            &s.manager,
            json!({"external_system": "ACREL", "external_reference": "47003333623"})
        )
        .await
        .status,
        StatusCode::CREATED,
        "serials are unique per vendor system"
    );

    let r = app
        .post(
            &format!("/api/v1/meters/{m}/assign"),
            &s.manager,
            json!({"connection_id": conn, "pole_id": pole}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["grid_id"], s.grid);
    assert_eq!(r.body["connection_id"], conn);
    assert_eq!(r.body["customer_id"], s.customer);
    assert_eq!(r.body["pole_id"], pole);
    assert_eq!(r.body["dcu_id"], gw, "the gateway follows the grid");
    assert_eq!(
        app.post(
            &format!("/api/v1/meters/{m}/assign"),
            &s.manager,
            json!({"connection_id": conn})
        )
        .await
        .status,
        StatusCode::CONFLICT,
        "already assigned"
    );
    let second_hps = meter(&app, &s.manager, "47000000002", json!({})).await;
    let r = app
        .post(
            &format!("/api/v1/meters/{second_hps}/assign"),
            &s.manager,
            json!({"connection_id": conn}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::CONFLICT,
        "one HPS meter per connection: {:?}",
        r.body
    );
    let r = app
        .patch(
            &format!("/api/v1/meters/{m}"),
            &s.manager,
            json!({"meter_type": "FS"}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::CONFLICT,
        "type is fixed while assigned"
    );

    // Observed state from machine clients; filters and search.
    let key = app.key(s.org, "SERVICE").await;
    let now = chrono::Utc::now().to_rfc3339();
    let r = app.put("/api/v1/meters/state", &key, json!({"states": [{"id": m, "is_on": true, "credit_wh": 12500, "voltage_v": 229.5, "last_seen_at": now}]})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body[0]["observed"]["credit_wh"], 12500);
    let online = app
        .get(
            &format!("/api/v1/meters?grid_id={}&online=true", s.grid),
            &s.manager,
        )
        .await;
    assert_eq!(online.body["items"].as_array().unwrap().len(), 1);
    let offline = app.get("/api/v1/meters?online=false", &s.manager).await;
    assert!(
        offline.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["id"] != m)
    );
    let by_customer = app
        .get("/api/v1/meters?search=A%20customer", &s.manager)
        .await;
    assert_eq!(by_customer.body["items"][0]["id"], m);
    let by_serial = app.get("/api/v1/meters?search=4700333", &s.manager).await;
    assert_eq!(by_serial.body["items"].as_array().unwrap().len(), 2);
    let inventory = app.get("/api/v1/meters?assigned=false", &s.manager).await;
    assert_eq!(inventory.body["items"].as_array().unwrap().len(), 2);

    let r = app
        .post(
            &format!("/api/v1/meters/{m}/unassign"),
            &s.manager,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.body["grid_id"].is_null()
            && r.body["connection_id"].is_null()
            && r.body["dcu_id"].is_null()
            && r.body["pole_id"].is_null()
    );
    assert_eq!(
        r.body["observed"]["credit_wh"], 12500,
        "observed state stays with the meter"
    );
    // With the meter gone, the gateway can be unassigned.
    assert_eq!(
        app.post(
            &format!("/api/v1/dcus/{gw}/unassign"),
            &s.manager,
            json!({})
        )
        .await
        .status,
        StatusCode::OK
    );
}

#[actix_web::test]
async fn calin_meters_need_a_gateway_with_room_and_tenancy_holds() {
    let app = TestApp::start().await;
    let s = site(&app, "A").await;
    let other = site(&app, "B").await;
    let conn = connection(&app, &s, json!([])).await;
    let other_conn = connection(&app, &other, json!([])).await;
    let m = meter(
        &app,
        &s.manager,
        "V1-1",
        json!({"communication_protocol": "CALIN_V1"}),
    )
    .await;
    let r = app
        .post(
            &format!("/api/v1/meters/{m}/assign"),
            &s.manager,
            json!({"connection_id": conn}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::CONFLICT,
        "no CALIN_V1 gateway on the grid: {:?}",
        r.body
    );
    let gw = app.post("/api/v1/dcus", &s.manager, json!({"external_system": "CALIN", "external_reference": "DCU-9", "communication_protocol": "CALIN_V1"})).await;
    let gw = gw.body["id"].as_i64().unwrap();
    app.post(
        &format!("/api/v1/dcus/{gw}/assign"),
        &s.manager,
        json!({"grid_id": s.grid}),
    )
    .await;
    let r = app
        .post(
            &format!("/api/v1/meters/{m}/assign"),
            &s.manager,
            json!({"connection_id": conn}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["dcu_id"], gw);
    let r = app
        .post(
            &format!("/api/v1/dcus/{gw}/unassign"),
            &s.manager,
            json!({}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::CONFLICT,
        "a gateway in use stays: {:?}",
        r.body
    );

    let bad = app
        .post(
            "/api/v1/meters",
            &s.manager,
            json!({"external_system": "CALIN", "external_reference": ""}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let bad = app
        .post(
            "/api/v1/meters",
            &s.manager,
            json!({"external_system": "KAMSTRUP", "external_reference": "1"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        app.get("/api/v1/meters", &As::Nobody).await.status,
        StatusCode::UNAUTHORIZED
    );
    let (_, finance) = app.member(s.org, "FINANCE").await;
    assert_eq!(
        app.post(
            "/api/v1/meters",
            &finance,
            json!({"external_system": "CALIN", "external_reference": "F"})
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get(&format!("/api/v1/meters/{m}"), &finance)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.get(&format!("/api/v1/meters/{m}"), &other.manager)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.post(
            &format!("/api/v1/meters/{m}/unassign"),
            &other.manager,
            json!({})
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    let mb = meter(&app, &other.manager, "B-1", json!({})).await;
    let r = app
        .post(
            &format!("/api/v1/meters/{mb}/assign"),
            &s.manager,
            json!({"connection_id": conn}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "another tenant's meter");
    let m2 = meter(&app, &s.manager, "A-2", json!({"meter_type": "FS"})).await;
    let r = app
        .post(
            &format!("/api/v1/meters/{m2}/assign"),
            &s.manager,
            json!({"connection_id": other_conn}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "another tenant's connection"
    );
    assert_eq!(
        app.put(
            "/api/v1/meters/state",
            &s.manager,
            json!({"states": [{"id": mb, "is_on": false}]})
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
}
