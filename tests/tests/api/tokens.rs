use actix_web::http::StatusCode;
use actix_web::test::TestRequest;
use serde_json::json;
use tiamat_tests::{As, TestApp};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::installs::{FAIL, app_with, drive, site, sts};

fn bearer(who: &As) -> (String, String) {
    match who {
        As::Token(t) => ("Authorization".into(), format!("Bearer {t}")),
        As::Key(k) => ("X-API-Key".into(), k.clone()),
        As::Nobody => ("X-Nobody".into(), "1".into()),
    }
}

async fn stored_token(app: &TestApp, interaction: i64) -> Option<String> {
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        token: Option<String>,
    }
    let mut c = AsyncPgConnection::establish(&app.db.url).await.unwrap();
    let r: Row = diesel::sql_query(format!(
        "SELECT token FROM meter_interactions WHERE id = {interaction}"
    ))
    .get_result(&mut c)
    .await
    .unwrap();
    r.token
}

#[actix_web::test]
async fn tokens_are_generated_without_a_command_and_audited_without_their_value() {
    let sts = sts().await;
    let app = app_with(Some(&sts), None).await;
    let s = site(&app, "A").await;
    let other = site(&app, "B").await;
    let url = format!("/api/v1/meters/{}/tokens", s.meter);

    let r = app
        .post(&url, &s.manager, json!({"kind": "CLEAR_TAMPER"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["token"], "12345678901234567890");
    assert_eq!(r.body["kind"], "CLEAR_TAMPER");
    let first_issue =
        chrono::DateTime::parse_from_rfc3339(r.body["issued_at"].as_str().unwrap()).unwrap();
    let r = app
        .post(
            &url,
            &s.manager,
            json!({"kind": "SET_POWER_LIMIT", "power_limit_w": 0}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "0 W removes the limit: {:?}",
        r.body
    );
    let second_issue =
        chrono::DateTime::parse_from_rfc3339(r.body["issued_at"].as_str().unwrap()).unwrap();
    // A minute apart (the stored time keeps microseconds, the first answer had nanoseconds).
    assert!(
        second_issue - first_issue > chrono::Duration::seconds(59),
        "{first_issue} then {second_issue}"
    );
    let sent: Vec<serde_json::Value> = sts
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(sent[0]["type"], "CLEAR_TAMPER");
    assert_eq!(sent[1]["type"], "SET_POWER_LIMIT");
    assert!(
        app.get(
            &format!("/api/v1/interactions?meter_id={}", s.meter),
            &s.manager
        )
        .await
        .body["items"]
            .as_array()
            .unwrap()
            .is_empty(),
        "no interaction is created"
    );

    // Credit is sold by finance.
    let top_up = json!({"kind": "TOP_UP", "energy_wh": 1500});
    assert_eq!(
        app.post(&url, &s.manager, top_up.clone()).await.status,
        StatusCode::FORBIDDEN
    );
    let (_, finance) = app.member(s.org, "FINANCE").await;
    let r = app.post(&url, &finance, top_up).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["energy_wh"], 1500);

    let trail = app
        .get("/api/v1/audit-events?resource_type=meter", &s.manager)
        .await;
    let generated: Vec<_> = trail.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "meter.token_generated")
        .collect();
    assert_eq!(generated.len(), 3);
    assert!(!trail.body.to_string().contains("12345678901234567890"));

    // Validation, access.
    for bad in [
        json!({"kind": "TOP_UP"}),
        json!({"kind": "TOP_UP", "energy_wh": 0}),
        json!({"kind": "SET_POWER_LIMIT", "power_limit_w": -5}),
        json!({"kind": "CLEAR_CREDIT", "energy_wh": 5}),
        json!({"kind": "TURN_OFF"}),
        json!({"kind": "CLEAR_CREDIT", "token": "1"}),
    ] {
        let r = app.post(&url, &s.manager, bad.clone()).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {:?}",
            r.body
        );
    }
    let clear = json!({"kind": "CLEAR_CREDIT"});
    assert_eq!(
        app.post(&url, &As::Nobody, clear.clone()).await.status,
        StatusCode::UNAUTHORIZED
    );
    let (_, developer) = app.member(s.org, "DEVELOPER").await;
    assert_eq!(
        app.post(&url, &developer, clear.clone()).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.post(&url, &other.manager, clear.clone()).await.status,
        StatusCode::NOT_FOUND
    );

    // An Idempotency-Key returns the same token without generating another.
    let before = sts.received_requests().await.unwrap().len();
    let (h, v) = bearer(&s.manager);
    for _ in 0..2 {
        let r = app
            .send(
                TestRequest::post()
                    .uri(&url)
                    .insert_header((h.as_str(), v.as_str()))
                    .insert_header(("Idempotency-Key", "tok-1"))
                    .set_json(&clear)
                    .to_request(),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    assert_eq!(sts.received_requests().await.unwrap().len(), before + 1);

    let bare = app_with(None, None).await;
    let s = site(&bare, "C").await;
    let r = bare
        .post(
            &format!("/api/v1/meters/{}/tokens", s.meter),
            &s.manager,
            clear,
        )
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);
    assert_eq!(r.body["code"], "integration_unavailable");
}

#[actix_web::test]
async fn offline_clear_tamper_tokens_answer_every_row() {
    let sts = sts().await;
    let app = app_with(Some(&sts), None).await;
    let s = site(&app, "A").await;
    let other = site(&app, "B").await;
    let csv = |who: &As, body: String, content_type: &str| {
        let (h, v) = bearer(who);
        TestRequest::post()
            .uri("/api/v1/meters/offline-clear-tamper-tokens")
            .insert_header((h, v))
            .insert_header(("Content-Type", content_type.to_owned()))
            .set_payload(body)
            .to_request()
    };
    let body = format!(
        "serial,decoder_key\n{},FEDCBA9876543210\n47000000000,ABCD\n{},\n",
        s.serial, other.serial
    );
    let r = app.send(csv(&s.manager, body.clone(), "text/csv")).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert!(
        r.headers
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = r.body.as_str().unwrap().to_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "serial,token,error");
    assert_eq!(lines[1], format!("{},12345678901234567890,", s.serial));
    assert_eq!(lines[2], "47000000000,,meter not found");
    assert_eq!(
        lines[3],
        format!("{},,meter not found", other.serial),
        "another organization's meter is unknown here"
    );
    let sent: Vec<serde_json::Value> = sts
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["type"], "CLEAR_TAMPER");
    assert_eq!(
        sent[0]["decoderKey"], "FEDCBA9876543210",
        "the key given wins"
    );

    let bad = app
        .send(csv(&s.manager, "1,k\n2,k,extra\n".into(), "text/csv"))
        .await;
    assert_eq!(
        bad.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        bad.body
    );
    assert_eq!(bad.body["errors"][0]["field"], "line 2");
    let json = app
        .send(csv(&s.manager, "{}".into(), "application/json"))
        .await;
    assert_eq!(json.status, StatusCode::BAD_REQUEST);
    let too_many = "1,k\n".repeat(5_001);
    assert_eq!(
        app.send(csv(&s.manager, too_many, "text/csv")).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        app.send(csv(&As::Nobody, body.clone(), "text/csv"))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let (_, developer) = app.member(s.org, "DEVELOPER").await;
    assert_eq!(
        app.send(csv(&developer, body, "text/csv")).await.status,
        StatusCode::FORBIDDEN
    );
}

#[actix_web::test]
async fn a_failed_interaction_is_retried_as_a_new_one_with_a_fresh_token() {
    let sts = MockServer::start().await;
    for token in ["11111111111111111111", "22222222222222222222"] {
        Mock::given(method("POST"))
            .and(path("/token"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"token": token})))
            .up_to_n_times(1)
            .mount(&sts)
            .await;
    }
    let app = app_with(Some(&sts), None).await;
    let s = site(&app, "A").await;
    let other = site(&app, "B").await;
    let clear = app
        .post(
            &format!("/api/v1/meters/{}/commands", s.meter),
            &s.manager,
            json!({"kind": "CLEAR_CREDIT"}),
        )
        .await;
    assert_eq!(clear.status, StatusCode::CREATED, "{:?}", clear.body);
    let id = clear.body["id"].as_i64().unwrap();
    let url = format!("/api/v1/interactions/{id}/retry");
    let r = app.post(&url, &s.manager, json!({})).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "only FAILED: {:?}", r.body);
    drive(&app, id, &FAIL).await;

    assert_eq!(
        app.post(&url, &As::Nobody, json!({})).await.status,
        StatusCode::UNAUTHORIZED
    );
    let (_, developer) = app.member(s.org, "DEVELOPER").await;
    assert_eq!(
        app.post(&url, &developer, json!({})).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.post(&url, &other.manager, json!({})).await.status,
        StatusCode::NOT_FOUND
    );

    let (h, v) = bearer(&s.manager);
    let send = || {
        TestRequest::post()
            .uri(&url)
            .insert_header((h.as_str(), v.as_str()))
            .insert_header(("Idempotency-Key", "retry-1"))
            .to_request()
    };
    let retry = app.send(send()).await;
    assert_eq!(retry.status, StatusCode::CREATED, "{:?}", retry.body);
    assert_eq!(retry.body["retry_of"], id);
    assert_eq!(retry.body["kind"], "CLEAR_CREDIT");
    assert_eq!(retry.body["status"], "QUEUED");
    let new_id = retry.body["id"].as_i64().unwrap();
    assert_ne!(new_id, id);
    assert_eq!(
        stored_token(&app, id).await.as_deref(),
        Some("11111111111111111111")
    );
    assert_eq!(
        stored_token(&app, new_id).await.as_deref(),
        Some("22222222222222222222"),
        "a failed token is regenerated, not re-sent"
    );
    let replay = app.send(send()).await;
    assert_eq!(replay.body["id"], new_id);
    assert_eq!(replay.headers.get("idempotent-replayed").unwrap(), "true");
    let again = app.post(&url, &s.manager, json!({})).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "retried once already");
    assert_eq!(
        app.get(&format!("/api/v1/interactions/{new_id}"), &s.manager)
            .await
            .body["retry_of"],
        id
    );
}

#[actix_web::test]
async fn a_preexisting_token_is_delivered_and_retried_as_supplied() {
    let app = app_with(None, None).await;
    let s = site(&app, "A").await;
    let (_, support) = app.member(s.org, "SUPPORT").await;
    let url = format!("/api/v1/meters/{}/commands", s.meter);
    let body = json!({"kind": "DELIVER_PREEXISTING_TOKEN", "token": "5555 6666 7777 8888 9999"});
    let r = app.post(&url, &support, body.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["kind"], "DELIVER_PREEXISTING_TOKEN");
    assert!(!r.body.to_string().contains("55556666777788889999"));
    let id = r.body["id"].as_i64().unwrap();
    assert_eq!(
        stored_token(&app, id).await.as_deref(),
        Some("55556666777788889999")
    );
    let r = app
        .post(&url, &support, json!({"kind": "DELIVER_PREEXISTING_TOKEN"}))
        .await;
    assert_eq!(
        r.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "needs the token"
    );
    let (_, developer) = app.member(s.org, "DEVELOPER").await;
    assert_eq!(
        app.post(&url, &developer, body).await.status,
        StatusCode::FORBIDDEN
    );

    drive(&app, id, &FAIL).await;
    let retry = app
        .post(
            &format!("/api/v1/interactions/{id}/retry"),
            &support,
            json!({}),
        )
        .await;
    assert_eq!(retry.status, StatusCode::CREATED, "{:?}", retry.body);
    let new_id = retry.body["id"].as_i64().unwrap();
    assert_eq!(
        stored_token(&app, new_id).await.as_deref(),
        Some("55556666777788889999")
    );
}
