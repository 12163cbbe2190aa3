use actix_web::http::StatusCode;
use actix_web::test::TestRequest;
use tiamat_tests::{As, TestApp};

#[actix_web::test]
async fn health_metrics_docs_and_request_ids() {
    let app = TestApp::start().await;
    let live = app.get("/health/live", &As::Nobody).await;
    assert_eq!(live.status, StatusCode::OK);
    let ready = app.get("/health/ready", &As::Nobody).await;
    assert_eq!(ready.status, StatusCode::OK, "{:?}", ready.body);
    assert_eq!(ready.body["ready"], true);
    assert_eq!(ready.body["checks"][0]["name"], "database");

    // A request id is generated, or the client's is echoed.
    assert!(live.headers.get("x-request-id").is_some());
    let r = app
        .send(
            TestRequest::get()
                .uri("/health/live")
                .insert_header(("X-Request-Id", "abc-123"))
                .to_request(),
        )
        .await;
    assert_eq!(r.headers.get("x-request-id").unwrap(), "abc-123");
    let r = app
        .send(
            TestRequest::get()
                .uri("/health/live")
                .insert_header(("X-Request-Id", "bad id with spaces"))
                .to_request(),
        )
        .await;
    assert_ne!(r.headers.get("x-request-id").unwrap(), "bad id with spaces");

    app.get("/api/v1/me", &app.root).await;
    let metrics = app.get("/metrics", &As::Nobody).await;
    let text = metrics.body.as_str().unwrap_or_default();
    assert!(
        text.contains(
            "tiamat_http_requests_total{route=\"/api/v1/me\",method=\"GET\",status=\"200\"}"
        ),
        "{text}"
    );
    assert!(
        text.contains("tiamat_db_pool_connections{state=\"max\"} 4"),
        "{text}"
    );

    let doc = app.get("/api/v1/openapi.json", &As::Nobody).await;
    assert_eq!(doc.status, StatusCode::OK);
    let paths = doc.body["paths"].as_object().unwrap();
    for p in [
        "/api/v1/me",
        "/api/v1/customers",
        "/api/v1/customers/{id}",
        "/api/v1/grids",
        "/api/v1/members",
        "/api/v1/agents",
        "/api/v1/api-keys",
        "/api/v1/audit-events",
        "/api/v1/organizations/{id}",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} missing from the OpenAPI document"
        );
    }
    let docs = app.get("/docs/", &As::Nobody).await;
    assert_eq!(docs.status, StatusCode::OK);
    assert!(
        docs.body.as_str().unwrap_or_default().contains("swagger"),
        "the Swagger UI page"
    );
    assert_eq!(
        app.get("/docs", &As::Nobody).await.status,
        StatusCode::PERMANENT_REDIRECT
    );
}

#[actix_web::test]
async fn bad_input_gets_clear_problems_not_500s() {
    let app = TestApp::start().await;
    let missing = app.get("/api/v1/nothing-here", &app.root).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.body["code"], "not_found");

    let key = match &app.root {
        As::Key(k) => k.clone(),
        _ => unreachable!(),
    };
    let malformed = app
        .send(
            TestRequest::post()
                .uri("/api/v1/grids")
                .insert_header(("X-API-Key", key.as_str()))
                .insert_header(("content-type", "application/json"))
                .set_payload("{\"name\": ")
                .to_request(),
        )
        .await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(malformed.body["code"], "malformed_request");

    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(300 * 1024));
    let too_large = app
        .send(
            TestRequest::post()
                .uri("/api/v1/grids")
                .insert_header(("X-API-Key", key.as_str()))
                .insert_header(("content-type", "application/json"))
                .set_payload(huge)
                .to_request(),
        )
        .await;
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);

    let wrong_type = app
        .send(
            TestRequest::post()
                .uri("/api/v1/grids")
                .insert_header(("X-API-Key", key.as_str()))
                .insert_header(("content-type", "text/plain"))
                .set_payload("hi")
                .to_request(),
        )
        .await;
    assert_eq!(wrong_type.status, StatusCode::BAD_REQUEST);
    let unknown_query = app.get("/api/v1/customers?colour=red", &app.root).await;
    assert_eq!(unknown_query.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[actix_web::test]
async fn readiness_shows_the_live_event_listener() {
    let app = TestApp::start().await;
    // In process, no listener runs: shown, but not fatal (the REST API works without it).
    let r = app.get("/health/ready", &As::Nobody).await;
    assert_eq!(r.status, StatusCode::OK);
    let live = r.body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "live_events")
        .cloned()
        .unwrap();
    assert_eq!(live["ok"], false);
    assert_eq!(live["critical"], false);
    // A served instance starts it.
    let server = app.serve().await;
    let body: serde_json::Value = awc::Client::default()
        .get(server.url("/health/ready"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let live = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "live_events")
        .cloned()
        .unwrap();
    assert_eq!(live["ok"], true, "{body}");
}
