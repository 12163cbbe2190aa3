use actix_web::http::StatusCode;
use serde_json::json;
use tiamat_tests::{As, TestApp};

#[actix_web::test]
async fn grid_state_and_connectivity_use_real_numbers() {
    let app = TestApp::start().await;
    let a = app.organization("A").await;
    let b = app.organization("B").await;
    let grid = app.grid(a, "G").await;
    let gb = app.grid(b, "GB").await;
    let (_, manager) = app.member(a, "MANAGER").await;
    let (_, manager_b) = app.member(b, "MANAGER").await;
    let key = app.key(a, "SERVICE").await;

    // Four meters on four connections; three seen just now, one long ago.
    let mut meters = Vec::new();
    for i in 0..4 {
        let c = app
            .post(
                "/api/v1/customers",
                &manager,
                json!({"grid_id": grid, "full_name": format!("C{i}")}),
            )
            .await;
        let conn = app
            .post(
                "/api/v1/connections",
                &manager,
                json!({"customer_id": c.body["id"]}),
            )
            .await;
        let m = app
            .post(
                "/api/v1/meters",
                &manager,
                json!({"external_system": "CALIN", "external_reference": format!("S{i}")}),
            )
            .await;
        let id = m.body["id"].as_i64().unwrap();
        let r = app
            .post(
                &format!("/api/v1/meters/{id}/assign"),
                &manager,
                json!({"connection_id": conn.body["id"]}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        meters.push(id);
    }
    let now = chrono::Utc::now().to_rfc3339();
    let old = (chrono::Utc::now() - chrono::Duration::hours(5)).to_rfc3339();
    let states: Vec<_> = meters
        .iter()
        .enumerate()
        .map(|(i, id)| json!({"id": id, "last_seen_at": if i < 3 { &now } else { &old }}))
        .collect();
    assert_eq!(
        app.put("/api/v1/meters/state", &key, json!({"states": states}))
            .await
            .status,
        StatusCode::OK
    );
    for (reference, online) in [("GW-ON", true), ("GW-OFF", false)] {
        let g = app.post("/api/v1/dcus", &manager, json!({"external_system": "CHIRPSTACK", "external_reference": reference, "communication_protocol": "CALIN_LORAWAN"})).await;
        let id = g.body["id"].as_i64().unwrap();
        app.post(
            &format!("/api/v1/dcus/{id}/assign"),
            &manager,
            json!({"grid_id": grid}),
        )
        .await;
        app.put(
            "/api/v1/dcus/state",
            &key,
            json!({"states": [{"id": id, "is_online": online}]}),
        )
        .await;
    }

    let r = app
        .get(
            &format!("/api/v1/grids/{grid}/connectivity?minutes=60"),
            &manager,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        r.body["meters"],
        json!({"total": 4, "seen": 3, "share_seen": 0.75})
    );
    assert_eq!(
        r.body["gateways"],
        json!({"online": ["GW-ON"], "offline": ["GW-OFF"], "share_online": 0.5})
    );
    let wide = app
        .get(
            &format!("/api/v1/grids/{grid}/connectivity?minutes=600"),
            &manager,
        )
        .await;
    assert_eq!(wide.body["meters"]["share_seen"], 1.0);
    assert_eq!(
        app.get(
            &format!("/api/v1/grids/{grid}/connectivity?minutes=0"),
            &manager
        )
        .await
        .status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        app.get(&format!("/api/v1/grids/{gb}/connectivity"), &manager)
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // Energy state, written by the site controller's key.
    let r = app
        .put(
            &format!("/api/v1/grids/{grid}/state"),
            &key,
            json!({"is_hps_on": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["is_hps_on"], true);
    let stamped = r.body["is_hps_on_updated_at"].clone();
    assert!(stamped.is_string());
    assert!(r.body["is_fs_on_updated_at"].is_null());
    assert_eq!(r.body["all_gateways_online"], false);
    let again = app
        .put(
            &format!("/api/v1/grids/{grid}/state"),
            &key,
            json!({"is_hps_on": true, "should_fs_be_on": true}),
        )
        .await;
    assert_eq!(
        again.body["is_hps_on_updated_at"], stamped,
        "unchanged values keep their time"
    );
    assert!(again.body["should_fs_be_on_updated_at"].is_string());
    assert_eq!(
        app.put(&format!("/api/v1/grids/{grid}/state"), &key, json!({}))
            .await
            .status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        app.put(
            &format!("/api/v1/grids/{grid}/state"),
            &key,
            json!({"is_hps_on": "yes"})
        )
        .await
        .status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let (_, support) = app.member(a, "SUPPORT").await;
    assert_eq!(
        app.put(
            &format!("/api/v1/grids/{grid}/state"),
            &support,
            json!({"is_fs_on": true})
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.put(
            &format!("/api/v1/grids/{grid}/state"),
            &As::Nobody,
            json!({"is_fs_on": true})
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.put(
            &format!("/api/v1/grids/{grid}/state"),
            &manager_b,
            json!({"is_fs_on": true})
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    let st = app
        .get(&format!("/api/v1/grids/{grid}/state"), &support)
        .await;
    assert_eq!(st.body["gateways"].as_array().unwrap().len(), 2);
}

#[actix_web::test]
async fn the_connections_export_is_quoted_csv_and_complete() {
    let app = TestApp::start().await;
    let a = app.organization("A").await;
    let b = app.organization("B").await;
    let grid = app.grid(a, "G").await;
    let (_, manager) = app.member(a, "MANAGER").await;
    let (_, manager_b) = app.member(b, "MANAGER").await;
    // More lines than one export page (500), to cross page boundaries.
    let customer = app
        .post(
            "/api/v1/customers",
            &manager,
            json!({"grid_id": grid, "full_name": "Okafor, \"Ada\"", "phone": "+2348012345678"}),
        )
        .await;
    let cid = customer.body["id"].as_i64().unwrap();
    for i in 0..520 {
        let upload = format!("u-{i}");
        let r = app
            .post(
                "/api/v1/connections",
                &manager,
                json!({"customer_id": cid, "upload_uuid": upload}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let first = app
        .get(
            &format!("/api/v1/connections?customer_id={cid}&limit=1"),
            &manager,
        )
        .await;
    let first_conn = first.body["items"][0]["id"].as_i64().unwrap();
    let m = app
        .post(
            "/api/v1/meters",
            &manager,
            json!({"external_system": "CALIN", "external_reference": "EXP-1"}),
        )
        .await;
    let mid = m.body["id"].as_i64().unwrap();
    app.post(
        &format!("/api/v1/meters/{mid}/assign"),
        &manager,
        json!({"connection_id": first_conn}),
    )
    .await;

    let r = app
        .get(&format!("/api/v1/grids/{grid}/connections.csv"), &manager)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.headers
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = r.body.as_str().expect("csv text").to_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + 520, "header plus one line per connection");
    assert!(lines[0].starts_with("customer_id,customer_name,phone"));
    assert!(
        lines[1].contains("\"Okafor, \"\"Ada\"\"\""),
        "RFC 4180 quoting: {}",
        lines[1]
    );
    assert!(
        lines[1].contains("EXP-1"),
        "the assigned meter is on its connection's line"
    );
    assert!(lines.iter().filter(|l| l.contains(",u-")).count() == 520);

    assert_eq!(
        app.get(&format!("/api/v1/grids/{grid}/connections.csv"), &manager_b)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(
            &format!("/api/v1/grids/{grid}/connections.csv"),
            &As::Nobody
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );
    let (_, tech) = app.member(a, "TECH").await;
    assert_eq!(
        app.get(&format!("/api/v1/grids/{grid}/connections.csv"), &tech)
            .await
            .status,
        StatusCode::OK,
        "tech reads customers and connections"
    );
    let (_, dev) = app.member(a, "DEVELOPER").await;
    assert_eq!(
        app.get(&format!("/api/v1/grids/{grid}/connections.csv"), &dev)
            .await
            .status,
        StatusCode::OK
    );
}
