use actix_web::http::StatusCode;
use serde_json::json;
use tiamat_tests::{As, TestApp};

/// An organization with a grid (energised or not), an online LoRaWAN gateway and an installed
/// meter heard from just now.
async fn installed_meter(app: &TestApp, name: &str, energised: bool) -> (i64, i64, As) {
    let org = app.organization(name).await;
    let grid = app.grid(org, &format!("{name} grid")).await;
    let (_, manager) = app.member(org, "MANAGER").await;
    let key = app.key(org, "SERVICE").await;
    app.online_gateway(&manager, &key, grid, name).await;
    app.energise(&key, grid, energised).await;
    let meter = app
        .connected_meter(
            &manager,
            grid,
            json!({"external_system": "CALIN", "external_reference": format!("{name}-1")}),
        )
        .await;
    app.heard_now(&key, meter).await;
    (meter, grid, manager)
}

#[actix_web::test]
async fn commands_are_queued_coalesced_superseded_and_cancelled() {
    let app = TestApp::start().await;
    let (meter, grid, manager) = installed_meter(&app, "A", true).await;

    let off = app
        .post(
            &format!("/api/v1/meters/{meter}/commands"),
            &manager,
            json!({"kind": "TURN_OFF"}),
        )
        .await;
    assert_eq!(off.status, StatusCode::CREATED, "{:?}", off.body);
    assert_eq!(off.body["status"], "QUEUED");
    assert_eq!(off.body["grid_id"], grid);
    let off_id = off.body["id"].as_i64().unwrap();

    let read1 = app
        .post(
            &format!("/api/v1/meters/{meter}/commands"),
            &manager,
            json!({"kind": "READ_CREDIT"}),
        )
        .await;
    assert_eq!(read1.status, StatusCode::CREATED, "{:?}", read1.body);
    assert!(read1.body["expires_at"].is_string(), "reads expire");
    let read2 = app
        .post(
            &format!("/api/v1/meters/{meter}/commands"),
            &manager,
            json!({"kind": "READ_CREDIT"}),
        )
        .await;
    assert_eq!(
        read2.status,
        StatusCode::OK,
        "coalesced into the pending read"
    );
    assert_eq!(read2.body["id"], read1.body["id"]);
    assert_eq!(read2.body["coalesced_requests"], 1);

    let on = app
        .post(
            &format!("/api/v1/meters/{meter}/commands"),
            &manager,
            json!({"kind": "TURN_ON"}),
        )
        .await;
    assert_eq!(on.status, StatusCode::CREATED, "{:?}", on.body);
    let off_now = app
        .get(&format!("/api/v1/interactions/{off_id}"), &manager)
        .await;
    assert_eq!(
        off_now.body["status"], "SUPERSEDED",
        "the contradicting TURN_OFF is retired"
    );
    assert_eq!(off_now.body["superseded_by"], on.body["id"]);

    let unfinished = app
        .get(
            &format!("/api/v1/interactions?meter_id={meter}&status=QUEUED"),
            &manager,
        )
        .await;
    let kinds: Vec<_> = unfinished.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["READ_CREDIT", "TURN_ON"]);

    let me = app.get("/api/v1/me", &manager).await;
    let trail = app
        .get(
            "/api/v1/audit-events?resource_type=meter_interaction",
            &manager,
        )
        .await;
    let actions: Vec<_> = trail.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        actions,
        [
            "meter_interaction.requested",
            "meter_interaction.requested",
            "meter_interaction.coalesced",
            "meter_interaction.requested"
        ]
    );
    assert!(
        trail.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["actor_account_id"] == me.body["account_id"])
    );

    let on_id = on.body["id"].as_i64().unwrap();
    let cancelled = app
        .post(
            &format!("/api/v1/interactions/{on_id}/cancel"),
            &manager,
            json!({}),
        )
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{:?}", cancelled.body);
    assert_eq!(cancelled.body["status"], "ABORTED");
    let again = app
        .post(
            &format!("/api/v1/interactions/{on_id}/cancel"),
            &manager,
            json!({}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
}

#[actix_web::test]
async fn a_dark_grid_suspends_and_bad_requests_are_refused() {
    let app = TestApp::start().await;
    let (meter, _, manager) = installed_meter(&app, "A", false).await;
    let (other_meter, _, other_manager) = installed_meter(&app, "B", true).await;
    let r = app
        .post(
            &format!("/api/v1/meters/{meter}/commands"),
            &manager,
            json!({"kind": "TURN_OFF"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["status"], "SUSPENDED");
    assert_eq!(r.body["history"][0]["code"], "grid_not_energised");

    let bad = app
        .post(
            &format!("/api/v1/meters/{meter}/commands"),
            &manager,
            json!({"kind": "SET_POWER_LIMIT"}),
        )
        .await;
    assert_eq!(
        bad.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a limit needs its watts: {:?}",
        bad.body
    );
    let bad = app
        .post(
            &format!("/api/v1/meters/{meter}/commands"),
            &manager,
            json!({"kind": "EXPLODE"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        app.post(
            &format!("/api/v1/meters/{meter}/commands"),
            &As::Nobody,
            json!({"kind": "TURN_ON"})
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );
    let (_, dev) = app
        .member(r.body["organization_id"].as_i64().unwrap(), "DEVELOPER")
        .await;
    assert_eq!(
        app.post(
            &format!("/api/v1/meters/{meter}/commands"),
            &dev,
            json!({"kind": "TURN_ON"})
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.post(
            &format!("/api/v1/meters/{other_meter}/commands"),
            &manager,
            json!({"kind": "TURN_ON"})
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    let id = r.body["id"].as_i64().unwrap();
    assert_eq!(
        app.get(&format!("/api/v1/interactions/{id}"), &other_manager)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert!(
        app.get("/api/v1/interactions", &other_manager).await.body["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let top_up = app
        .post(
            &format!("/api/v1/meters/{meter}/commands"),
            &manager,
            json!({"kind": "TOP_UP", "energy_wh": 1000}),
        )
        .await;
    assert_eq!(
        top_up.status,
        StatusCode::FORBIDDEN,
        "credit is sold through orders"
    );
}

#[actix_web::test]
async fn an_idempotency_key_replays_the_first_answer() {
    use actix_web::test::TestRequest;
    let app = TestApp::start().await;
    let (meter, _, manager) = installed_meter(&app, "A", true).await;
    let As::Token(token) = &manager else {
        unreachable!()
    };
    let send = |key: &str, body: serde_json::Value| {
        TestRequest::post()
            .uri(&format!("/api/v1/meters/{meter}/commands"))
            .insert_header(("Authorization", format!("Bearer {token}")))
            .insert_header(("Idempotency-Key", key.to_owned()))
            .set_json(body)
            .to_request()
    };
    let first = app.send(send("op-42", json!({"kind": "TURN_OFF"}))).await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);
    assert!(first.headers.get("idempotent-replayed").is_none());
    let repeat = app.send(send("op-42", json!({"kind": "TURN_OFF"}))).await;
    assert_eq!(
        repeat.status,
        StatusCode::CREATED,
        "the first answer, status included"
    );
    assert_eq!(repeat.body["id"], first.body["id"]);
    assert_eq!(repeat.headers.get("idempotent-replayed").unwrap(), "true");
    let reused = app.send(send("op-42", json!({"kind": "TURN_ON"}))).await;
    assert_eq!(
        reused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        reused.body
    );
    assert_eq!(reused.body["errors"][0]["field"], "Idempotency-Key");
    let all = app
        .get(&format!("/api/v1/interactions?meter_id={meter}"), &manager)
        .await;
    assert_eq!(
        all.body["items"].as_array().unwrap().len(),
        1,
        "nothing done twice"
    );
    // Another organization's identical key is its own.
    let (other_meter, _, other_manager) = installed_meter(&app, "B", true).await;
    let As::Token(other_token) = &other_manager else {
        unreachable!()
    };
    let other = app
        .send(
            TestRequest::post()
                .uri(&format!("/api/v1/meters/{other_meter}/commands"))
                .insert_header(("Authorization", format!("Bearer {other_token}")))
                .insert_header(("Idempotency-Key", "op-42"))
                .set_json(json!({"kind": "TURN_OFF"}))
                .to_request(),
        )
        .await;
    assert_eq!(other.status, StatusCode::CREATED);
    assert_ne!(other.body["id"], first.body["id"]);
}

#[actix_web::test]
async fn token_commands_generate_once_with_increasing_issue_dates() {
    use wiremock::matchers::{body_partial_json, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let sts = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_partial_json(
            json!({"type": "TOP_UP", "decoderKey": "0123456789ABCDEF"}),
        ))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"token": "1234 5678 9012 3456 7890"})),
        )
        .expect(2)
        .mount(&sts)
        .await;
    let base = sts.uri();
    let app = TestApp::start_with(|cfg| cfg.sts_generator_url = Some(base.parse().unwrap())).await;
    let (meter, _, manager) = installed_meter(&app, "A", true).await;
    let r = app
        .patch(
            &format!("/api/v1/meters/{meter}"),
            &manager,
            json!({"decoder_key": "0123456789ABCDEF"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["has_decoder_key"], true);
    assert!(
        r.body.get("decoder_key").is_none(),
        "the key is never shown"
    );
    let org = r.body["organization_id"].as_i64().unwrap();
    let (_, finance) = app.member(org, "FINANCE").await;

    let mut ids = Vec::new();
    for _ in 0..2 {
        let r = app
            .post(
                &format!("/api/v1/meters/{meter}/commands"),
                &finance,
                json!({"kind": "TOP_UP", "energy_wh": 2500}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        assert_eq!(r.body["energy_wh"], 2500);
        assert!(
            !r.body.to_string().contains("12345678901234567890"),
            "tokens never leave the database"
        );
        ids.push(r.body["id"].clone());
    }
    assert_ne!(
        ids[0], ids[1],
        "value-carrying commands are never coalesced"
    );
    let requests = sts.received_requests().await.unwrap();
    let dates: Vec<chrono::DateTime<chrono::FixedOffset>> = requests
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            chrono::DateTime::parse_from_rfc3339(v["issueDate"].as_str().unwrap()).unwrap()
        })
        .collect();
    assert!(
        dates[1] - dates[0] >= chrono::Duration::minutes(1),
        "issue dates strictly increase by at least a minute: {dates:?}"
    );
}
