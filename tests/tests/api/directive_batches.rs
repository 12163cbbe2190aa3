use actix_web::http::StatusCode;
use chrono::{Duration, TimeZone, Utc};
use serde_json::{Value, json};
use tiamat_tests::{As, TestApp};

/// An organization with an energised dual-meter grid (Africa/Lagos), an online LoRaWAN gateway,
/// two FS meters and one HPS meter, all recently seen. Answers (grid, meters FS, meter HPS,
/// manager).
async fn dual_grid(app: &TestApp, name: &str) -> (i64, Vec<i64>, i64, As) {
    let org = app.organization(name).await;
    let grid = app.grid(org, &format!("{name} grid")).await;
    let (_, manager) = app.member(org, "MANAGER").await;
    let key = app.key(org, "SERVICE").await;
    let r = app
        .patch(
            &format!("/api/v1/grids/{grid}"),
            &manager,
            json!({"uses_dual_meter_setup": true, "timezone": "Africa/Lagos"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    app.online_gateway(&manager, &key, grid, name).await;
    app.energise(&key, grid, true).await;
    let mut ids = Vec::new();
    for (i, kind) in ["FS", "FS", "HPS"].iter().enumerate() {
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
                json!({"external_system": "CALIN", "external_reference": format!("{name}-{i}"), "meter_type": kind}),
            )
            .await;
        assert_eq!(m.status, StatusCode::CREATED, "{:?}", m.body);
        let meter = m.body["id"].as_i64().unwrap();
        let r = app
            .post(
                &format!("/api/v1/meters/{meter}/assign"),
                &manager,
                json!({"connection_id": conn.body["id"]}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        ids.push(meter);
    }
    let now = Utc::now().to_rfc3339();
    let states: Vec<Value> = ids
        .iter()
        .map(|id| json!({"id": id, "last_seen_at": now}))
        .collect();
    app.put("/api/v1/meters/state", &key, json!({"states": states}))
        .await;
    let hps = ids.pop().unwrap();
    (grid, ids, hps, manager)
}

async fn rule(app: &TestApp, who: &As, body: Value) -> i64 {
    let r = app.post("/api/v1/directive-batches", who, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    r.body["id"].as_i64().unwrap()
}

async fn run(app: &TestApp, who: &As, rule: i64) -> Value {
    let r = app
        .post(
            &format!("/api/v1/directive-batches/{rule}/executions"),
            who,
            json!(null),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    r.body
}

async fn interactions(app: &TestApp, who: &As, query: &str) -> Vec<Value> {
    let r = app.get(&format!("/api/v1/interactions?{query}"), who).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body["items"].as_array().unwrap().clone()
}

#[actix_web::test]
async fn scans_coalesce_and_fs_switches_supersede() {
    let app = TestApp::start().await;
    let (grid, fs, hps, manager) = dual_grid(&app, "A").await;

    // One meter already has a read waiting: the scan joins it instead of creating another.
    let waiting = app
        .post(
            &format!("/api/v1/meters/{}/commands", fs[0]),
            &manager,
            json!({"kind": "READ_CREDIT"}),
        )
        .await;
    assert_eq!(waiting.status, StatusCode::CREATED, "{:?}", waiting.body);
    let scan = rule(
        &app,
        &manager,
        json!({"grid_id": grid, "local_time": "06:30", "is_repeating": true, "action": "SCAN", "scan_kind": "READ_CREDIT"}),
    )
    .await;
    let got = app
        .get(&format!("/api/v1/directive-batches/{scan}"), &manager)
        .await;
    assert_eq!(got.body["local_time"], "06:30");
    assert_eq!(got.body["timezone"], "Africa/Lagos");
    let e = run(&app, &manager, scan).await;
    assert_eq!(e["meter_count"], 3, "scans read every meter: {e:?}");
    assert_eq!(e["created_count"], 2);
    assert_eq!(e["coalesced_count"], 1);
    assert_eq!(e["progress"]["total"], 3);
    assert_eq!(e["progress"]["pending"], 3);
    assert_eq!(e["progress"]["coalesced"], 1);
    assert!(e["completed_at"].is_null());
    let linked = interactions(&app, &manager, &format!("batch_execution_id={}", e["id"])).await;
    assert_eq!(linked.len(), 3);
    assert!(linked.iter().any(|i| i["id"] == waiting.body["id"]));
    assert!(linked.iter().all(|i| i["kind"] == "READ_CREDIT"));
    let joined = app
        .get(
            &format!("/api/v1/interactions/{}", waiting.body["id"]),
            &manager,
        )
        .await;
    assert_eq!(joined.body["coalesced_requests"], 1);

    // FS OFF, then FS ON: one pending switch per FS meter, the OFFs superseded; HPS untouched.
    let off = rule(
        &app,
        &manager,
        json!({"grid_id": grid, "local_time": "22:00", "is_repeating": true, "action": "FS_OFF"}),
    )
    .await;
    let on = rule(
        &app,
        &manager,
        json!({"grid_id": grid, "local_time": "06:00", "is_repeating": true, "action": "FS_ON"}),
    )
    .await;
    let off_run = run(&app, &manager, off).await;
    assert_eq!(off_run["meter_count"], 2);
    assert_eq!(off_run["created_count"], 2);
    let on_run = run(&app, &manager, on).await;
    assert_eq!(on_run["created_count"], 2);
    for meter in &fs {
        let pending: Vec<Value> = interactions(&app, &manager, &format!("meter_id={meter}"))
            .await
            .into_iter()
            .filter(|i| i["kind"] == "TURN_ON" || i["kind"] == "TURN_OFF")
            .collect();
        let live: Vec<&Value> = pending.iter().filter(|i| i["status"] == "QUEUED").collect();
        assert_eq!(live.len(), 1, "{pending:?}");
        assert_eq!(live[0]["kind"], "TURN_ON");
        assert_eq!(live[0]["origin"], "batch");
        let off_row = pending.iter().find(|i| i["kind"] == "TURN_OFF").unwrap();
        assert_eq!(off_row["status"], "SUPERSEDED");
        assert_eq!(off_row["superseded_by"], live[0]["id"]);
    }
    assert!(
        interactions(&app, &manager, &format!("meter_id={hps}"))
            .await
            .iter()
            .all(|i| i["kind"] == "READ_CREDIT"),
        "FS switches skip HPS meters on dual-meter grids"
    );
    let off_now = app
        .get(
            &format!("/api/v1/directive-batch-executions/{}", off_run["id"]),
            &manager,
        )
        .await;
    assert_eq!(off_now.status, StatusCode::OK);
    assert_eq!(off_now.body["progress"]["superseded"], 2);
    assert_eq!(off_now.body["progress"]["pending"], 0);
    assert!(
        off_now.body["completed_at"].is_string(),
        "nothing left pending"
    );
    assert!(off_now.body["qualified_at"].is_null(), "nothing succeeded");
    let state = app
        .get(&format!("/api/v1/grids/{grid}/state"), &manager)
        .await;
    assert_eq!(state.body["should_fs_be_on"], true);

    let list = app
        .get(
            &format!("/api/v1/directive-batch-executions?directive_batch_id={on}"),
            &manager,
        )
        .await;
    assert_eq!(list.status, StatusCode::OK);
    let items = list.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], on_run["id"]);
    assert_eq!(items[0]["progress"]["pending"], 2);

    // Update and delete.
    let r = app
        .patch(
            &format!("/api/v1/directive-batches/{scan}"),
            &manager,
            json!({"local_time": "07:15", "scan_kind": "READ_VOLTAGE"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["local_time"], "07:15");
    assert_eq!(r.body["scan_kind"], "READ_VOLTAGE");
    let r = app
        .delete(&format!("/api/v1/directive-batches/{scan}"), &manager)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = app
        .get(&format!("/api/v1/directive-batches/{scan}"), &manager)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app
        .get(
            &format!("/api/v1/directive-batches?grid_id={grid}"),
            &manager,
        )
        .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 2);
    let audit = app
        .get(
            "/api/v1/audit-events?resource_type=directive_batch",
            &manager,
        )
        .await;
    let actions: Vec<&str> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["action"].as_str())
        .collect();
    assert!(actions.contains(&"directive_batch.created"), "{actions:?}");
    assert!(actions.contains(&"directive_batch.updated"), "{actions:?}");
    assert!(actions.contains(&"directive_batch.deleted"), "{actions:?}");
}

#[actix_web::test]
async fn invalid_rules_are_refused() {
    let app = TestApp::start().await;
    let org = app.organization("V").await;
    let grid = app.grid(org, "V grid").await;
    let (_, manager) = app.member(org, "MANAGER").await;
    let r = app
        .post(
            "/api/v1/directive-batches",
            &manager,
            json!({"grid_id": grid, "local_time": "24:00", "is_repeating": true, "action": "SCAN", "scan_kind": "TURN_OFF"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    let fields: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert_eq!(fields, ["local_time", "scan_kind"]);
    let r = app
        .post(
            "/api/v1/directive-batches",
            &manager,
            json!({"grid_id": grid, "local_time": "18:00", "is_repeating": true, "action": "FS_ON", "scan_kind": "READ_CREDIT"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    let r = app
        .post(
            "/api/v1/directive-batches",
            &manager,
            json!({"grid_id": grid, "local_time": "18:00", "is_repeating": true, "action": "FS_ON", "colour": "red"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert_eq!(r.body["errors"][0]["field"], "colour");
    let As::Token(token) = &manager else {
        panic!("members sign in with tokens")
    };
    let malformed = actix_web::test::TestRequest::post()
        .uri("/api/v1/directive-batches")
        .insert_header(("Authorization", format!("Bearer {token}")))
        .insert_header(("content-type", "application/json"))
        .set_payload("{\"grid_id\": ")
        .to_request();
    let r = app.send(malformed).await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "malformed JSON: {:?}",
        r.body
    );
    let r = app
        .post(
            "/api/v1/directive-batches",
            &manager,
            json!({"grid_id": grid, "local_time": "18:00", "is_repeating": true, "action": "REBOOT"}),
        )
        .await;
    assert!(r.status.is_client_error(), "{:?}", r.status);
    let id = rule(
        &app,
        &manager,
        json!({"grid_id": grid, "local_time": "18:00", "is_repeating": true, "action": "FS_ON"}),
    )
    .await;
    let r = app
        .patch(
            &format!("/api/v1/directive-batches/{id}"),
            &manager,
            json!({"action": "SCAN"}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a scan needs its kind"
    );
    let r = app
        .get("/api/v1/directive-batch-executions?limit=0", &manager)
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[actix_web::test]
async fn auth_permissions_and_tenancy() {
    let app = TestApp::start().await;
    let org = app.organization("P").await;
    let grid = app.grid(org, "P grid").await;
    let (_, manager) = app.member(org, "MANAGER").await;
    let (_, tech) = app.member(org, "TECH").await;
    let (_, developer) = app.member(org, "DEVELOPER").await;
    let body = json!({"grid_id": grid, "local_time": "18:00", "is_repeating": true, "action": "SCAN", "scan_kind": "READ_POWER"});
    let id = rule(&app, &manager, body.clone()).await;
    let e = run(&app, &manager, id).await;
    assert_eq!(e["meter_count"], 0, "an empty grid");
    assert!(e["completed_at"].is_string(), "nothing to wait for");

    // 401 without credentials.
    for (method, path) in [
        ("GET", "/api/v1/directive-batches".to_owned()),
        ("POST", "/api/v1/directive-batches".to_owned()),
        ("POST", format!("/api/v1/directive-batches/{id}/executions")),
        ("GET", "/api/v1/directive-batch-executions".to_owned()),
    ] {
        let r = match method {
            "GET" => app.get(&path, &As::Nobody).await,
            _ => app.post(&path, &As::Nobody, body.clone()).await,
        };
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    // 403: TECH commands meters but does not manage batches; DEVELOPER only reads.
    for who in [&tech, &developer] {
        let r = app
            .post("/api/v1/directive-batches", who, body.clone())
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
        let r = app
            .post(
                &format!("/api/v1/directive-batches/{id}/executions"),
                who,
                json!(null),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let r = app
            .patch(
                &format!("/api/v1/directive-batches/{id}"),
                who,
                json!({"local_time": "19:00"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let r = app
            .delete(&format!("/api/v1/directive-batches/{id}"), who)
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
    }
    let r = app.get("/api/v1/directive-batches", &developer).await;
    assert_eq!(r.status, StatusCode::OK, "reading needs meter_read only");
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);

    // Another tenant sees none of it.
    let other = app.organization("Q").await;
    let (_, stranger) = app.member(other, "ADMIN").await;
    let r = app.post("/api/v1/directive-batches", &stranger, body).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "another tenant's grid");
    for path in [
        format!("/api/v1/directive-batches/{id}"),
        format!("/api/v1/directive-batch-executions/{}", e["id"]),
    ] {
        let r = app.get(&path, &stranger).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
    }
    let r = app
        .post(
            &format!("/api/v1/directive-batches/{id}/executions"),
            &stranger,
            json!(null),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app
        .delete(&format!("/api/v1/directive-batches/{id}"), &stranger)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app
        .get("/api/v1/directive-batch-executions", &stranger)
        .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 0);
    let r = app.get("/api/v1/directive-batches", &stranger).await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 0);
}

#[actix_web::test]
async fn the_scheduler_fires_in_grid_time_exactly_once() {
    let app = TestApp::start().await;
    let (grid, fs, _, manager) = dual_grid(&app, "S").await;
    // A one-shot FS OFF at 18:00 Lagos time (UTC+1): due at 17:00 UTC. Tomorrow, so the rule is
    // older than its fire.
    let id = rule(
        &app,
        &manager,
        json!({"grid_id": grid, "local_time": "18:00", "is_repeating": false, "action": "FS_OFF"}),
    )
    .await;
    let day = (Utc::now() + Duration::days(1)).date_naive();
    let at = |h: u32, m: u32| Utc.from_utc_datetime(&day.and_hms_opt(h, m, 30).unwrap());
    let batches = &app.app.state.services.batches;

    let early = tiamat::batch_scheduler::run_once(batches, at(16, 59))
        .await
        .unwrap();
    assert_eq!(early, 0, "18:00 in Lagos has not come at 16:59 UTC");

    // Two instances' ticks at once: one fire.
    let (a, b) = tokio::join!(
        tiamat::batch_scheduler::run_once(batches, at(17, 0)),
        tiamat::batch_scheduler::run_once(batches, at(17, 0)),
    );
    assert_eq!(a.unwrap() + b.unwrap(), 1);
    let again = tiamat::batch_scheduler::run_once(batches, at(17, 1))
        .await
        .unwrap();
    assert_eq!(again, 0, "a one-shot rule fires once");

    let list = app
        .get(
            &format!("/api/v1/directive-batch-executions?directive_batch_id={id}"),
            &manager,
        )
        .await;
    let items = list.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{:?}", list.body);
    assert_eq!(
        items[0]["fire_key"],
        format!("{}T18:00", day.format("%Y-%m-%d"))
    );
    assert_eq!(items[0]["created_count"], fs.len());
    let got = app
        .get(&format!("/api/v1/directive-batches/{id}"), &manager)
        .await;
    assert!(got.body["done_at"].is_string(), "{:?}", got.body);
    let state = app
        .get(&format!("/api/v1/grids/{grid}/state"), &manager)
        .await;
    assert_eq!(state.body["should_fs_be_on"], false);
    let offs = interactions(&app, &manager, "kind=TURN_OFF").await;
    assert_eq!(offs.len(), fs.len());
}

#[actix_web::test]
async fn single_meter_grids_switch_fs_with_power_limit_tokens() {
    use wiremock::matchers::{body_partial_json, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    // Without a token generator an FS rule on a single-meter grid is refused before anything
    // is recorded.
    let app = TestApp::start().await;
    let org = app.organization("N").await;
    let grid = app.grid(org, "N grid").await;
    let (_, manager) = app.member(org, "MANAGER").await;
    let off = rule(
        &app,
        &manager,
        json!({"grid_id": grid, "local_time": "22:00", "is_repeating": true, "action": "FS_OFF"}),
    )
    .await;
    let r = app
        .post(
            &format!("/api/v1/directive-batches/{off}/executions"),
            &manager,
            json!(null),
        )
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);
    let r = app
        .get("/api/v1/directive-batch-executions", &manager)
        .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 0);

    let sts = MockServer::start().await;
    for (limit, expected) in [(200, 1), (0, 1)] {
        Mock::given(method("POST"))
            .and(path("/token"))
            .and(body_partial_json(
                json!({"type": "SET_POWER_LIMIT", "powerLimit": limit}),
            ))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"token": "1111 2222 3333 4444 5555"})),
            )
            .expect(expected)
            .mount(&sts)
            .await;
    }
    let base = sts.uri();
    let app = TestApp::start_with(|cfg| cfg.sts_generator_url = Some(base.parse().unwrap())).await;
    let (grid, meters, hps, manager) = dual_grid(&app, "T").await;
    let r = app
        .patch(
            &format!("/api/v1/grids/{grid}"),
            &manager,
            json!({"uses_dual_meter_setup": false}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // One meter has a decoder key; the others cannot get a token and are left out.
    let r = app
        .patch(
            &format!("/api/v1/meters/{hps}"),
            &manager,
            json!({"decoder_key": "0123456789ABCDEF"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let off = rule(
        &app,
        &manager,
        json!({"grid_id": grid, "local_time": "22:00", "is_repeating": true, "action": "FS_OFF"}),
    )
    .await;
    let on = rule(
        &app,
        &manager,
        json!({"grid_id": grid, "local_time": "06:00", "is_repeating": true, "action": "FS_ON"}),
    )
    .await;
    let e = run(&app, &manager, off).await;
    assert_eq!(e["meter_count"], 3, "every meter on a single-meter grid");
    assert_eq!(e["created_count"], 1);
    assert_eq!(e["skipped_count"], 2);
    run(&app, &manager, on).await;
    let rows = interactions(&app, &manager, &format!("meter_id={hps}")).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["kind"], "SET_POWER_LIMIT");
    assert_eq!(rows[0]["power_limit_w"], 200, "the meter's HPS limit");
    assert_eq!(rows[0]["status"], "SUPERSEDED");
    assert_eq!(rows[1]["power_limit_w"], 0, "no limit");
    assert_eq!(rows[1]["status"], "QUEUED");
    for m in meters {
        assert!(
            interactions(&app, &manager, &format!("meter_id={m}"))
                .await
                .is_empty()
        );
    }
}

#[actix_web::test]
async fn the_routes_are_in_the_openapi_document() {
    let app = TestApp::start().await;
    let doc = app.get("/api/v1/openapi.json", &As::Nobody).await;
    assert_eq!(doc.status, StatusCode::OK);
    for (path, method) in [
        ("/api/v1/directive-batches", "get"),
        ("/api/v1/directive-batches", "post"),
        ("/api/v1/directive-batches/{id}", "get"),
        ("/api/v1/directive-batches/{id}", "patch"),
        ("/api/v1/directive-batches/{id}", "delete"),
        ("/api/v1/directive-batches/{id}/executions", "post"),
        ("/api/v1/directive-batch-executions", "get"),
        ("/api/v1/directive-batch-executions/{id}", "get"),
    ] {
        assert!(
            doc.body["paths"][path][method].is_object(),
            "{method} {path} is not documented"
        );
    }
    let params = doc.body["paths"]["/api/v1/interactions"]["get"]["parameters"].to_string();
    assert!(params.contains("batch_execution_id"), "{params}");
}
