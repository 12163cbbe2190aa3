use actix_web::http::StatusCode;
use serde_json::json;
use tiamat_tests::{As, TestApp};

#[actix_web::test]
async fn customers_crud_search_and_pagination() {
    let app = TestApp::start().await;
    let a = app.organization("A").await;
    let g1 = app.grid(a, "Ikeja").await;
    let g2 = app.grid(a, "Epe").await;
    let (_, manager) = app.member(a, "MANAGER").await;

    let mut ids = Vec::new();
    for (i, name) in ["Ada Obi", "Bola Ade", "Chidi Eze"].iter().enumerate() {
        let grid = if i == 2 { g2 } else { g1 };
        let r = app
            .post("/api/v1/customers", &manager, json!({"grid_id": grid, "full_name": name, "phone": format!("+23480100000{i}"), "gender": "FEMALE", "latitude": 6.5, "longitude": 3.3}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        assert_eq!(r.body["organization_id"], a);
        assert_eq!(r.body["total_connection_fee"], 0);
        ids.push(r.body["id"].as_i64().unwrap());
    }
    let no_contact = app
        .post(
            "/api/v1/customers",
            &manager,
            json!({"grid_id": g1, "full_name": "Dayo"}),
        )
        .await;
    assert_eq!(no_contact.status, StatusCode::CREATED);
    assert!(
        no_contact.body["auth_user_id"].is_null(),
        "no login without e-mail or phone"
    );

    let by_grid = app
        .get(&format!("/api/v1/customers?grid_id={g2}"), &manager)
        .await;
    assert_eq!(by_grid.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(by_grid.body["items"][0]["full_name"], "Chidi Eze");
    let by_name = app.get("/api/v1/customers?search=bola", &manager).await;
    assert_eq!(by_name.body["items"][0]["id"], ids[1]);
    let by_phone = app
        .get("/api/v1/customers?search=%2B234801000002", &manager)
        .await;
    assert_eq!(by_phone.body["items"][0]["id"], ids[2]);
    let wildcard = app.get("/api/v1/customers?search=%25", &manager).await;
    assert!(
        wildcard.body["items"].as_array().unwrap().is_empty(),
        "user wildcards are escaped"
    );

    // Walk all pages of size 2.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/customers?limit=2&cursor={c}"),
            None => "/api/v1/customers?limit=2".into(),
        };
        let page = app.get(&path, &manager).await;
        seen.extend(
            page.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_i64().unwrap()),
        );
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 4);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));

    let r = app
        .patch(
            &format!("/api/v1/customers/{}", ids[0]),
            &manager,
            json!({"grid_id": g2, "gender": null, "full_name": "Ada O."}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["grid_id"], g2);
    assert!(r.body["gender"].is_null());
    assert_eq!(r.body["full_name"], "Ada O.");

    assert_eq!(
        app.delete(&format!("/api/v1/customers/{}", ids[0]), &manager)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get(&format!("/api/v1/customers/{}", ids[0]), &manager)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[actix_web::test]
async fn customer_validation_auth_permission_and_tenancy() {
    let app = TestApp::start().await;
    let a = app.organization("A").await;
    let b = app.organization("B").await;
    let ga = app.grid(a, "GA").await;
    let gb = app.grid(b, "GB").await;
    let (_, manager_a) = app.member(a, "MANAGER").await;
    let (_, finance_a) = app.member(a, "FINANCE").await;
    let (_, manager_b) = app.member(b, "MANAGER").await;
    let cb = app
        .post(
            "/api/v1/customers",
            &manager_b,
            json!({"grid_id": gb, "full_name": "Other"}),
        )
        .await;
    let cb = cb.body["id"].as_i64().unwrap();

    let r = app
        .post("/api/v1/customers", &manager_a, json!({"grid_id": ga, "full_name": " ", "phone": "080", "email": "x", "latitude": 100.0}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<_> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(fields, ["full_name", "email", "phone", "latitude"]);
    let r = app
        .post(
            "/api/v1/customers",
            &manager_a,
            json!({"grid_id": ga, "full_name": "X", "gender": "OTHER"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        app.get("/api/v1/customers?limit=abc", &manager_a)
            .await
            .status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        app.get("/api/v1/customers?cursor=zzz", &manager_a)
            .await
            .status,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    assert_eq!(
        app.get("/api/v1/customers", &As::Nobody).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.post(
            "/api/v1/customers",
            &finance_a,
            json!({"grid_id": ga, "full_name": "X"})
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get("/api/v1/customers", &finance_a).await.status,
        StatusCode::OK,
        "finance reads customers"
    );

    // Another tenant's customer and grid do not exist for A.
    assert_eq!(
        app.get(&format!("/api/v1/customers/{cb}"), &manager_a)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.patch(
            &format!("/api/v1/customers/{cb}"),
            &manager_a,
            json!({"full_name": "Mine"})
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.delete(&format!("/api/v1/customers/{cb}"), &manager_a)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let r = app
        .post(
            "/api/v1/customers",
            &manager_a,
            json!({"grid_id": gb, "full_name": "Sneaky"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body["detail"], "grid not found");
    let mine = app
        .post(
            "/api/v1/customers",
            &manager_a,
            json!({"grid_id": ga, "full_name": "Mine"}),
        )
        .await;
    let mine = mine.body["id"].as_i64().unwrap();
    let r = app
        .patch(
            &format!("/api/v1/customers/{mine}"),
            &manager_a,
            json!({"grid_id": gb}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "cannot move a customer to another tenant's grid"
    );
    let list = app
        .get(&format!("/api/v1/customers?grid_id={gb}"), &manager_a)
        .await;
    assert!(list.body["items"].as_array().unwrap().is_empty());
}

#[actix_web::test]
async fn agents_crud_and_their_narrow_view() {
    let app = TestApp::start().await;
    let a = app.organization("A").await;
    let b = app.organization("B").await;
    let g1 = app.grid(a, "G1").await;
    let g2 = app.grid(a, "G2").await;
    let gb = app.grid(b, "GB").await;
    let (_, sales) = app.member(a, "SALES").await;
    let (_, tech) = app.member(a, "TECH").await;

    let r = app
        .post(
            "/api/v1/agents",
            &sales,
            json!({"grid_id": g1, "full_name": "Vendor Vic", "phone": "+2348020000001"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let agent = r.body["id"].as_i64().unwrap();
    let agent_token = As::Token(tiamat_tests::token(
        r.body["auth_user_id"].as_str().unwrap(),
        600,
    ));

    let r = app
        .post(
            "/api/v1/agents",
            &sales,
            json!({"grid_id": g1, "full_name": "No Phone"}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "phone is required: {:?}",
        r.body
    );
    let r = app
        .post(
            "/api/v1/agents",
            &sales,
            json!({"grid_id": g1, "full_name": "Bad", "phone": "123"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        app.post(
            "/api/v1/agents",
            &tech,
            json!({"grid_id": g1, "full_name": "T", "phone": "+2348020000002"})
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get("/api/v1/agents", &tech).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get("/api/v1/agents", &As::Nobody).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.post(
            "/api/v1/agents",
            &sales,
            json!({"grid_id": gb, "full_name": "X", "phone": "+2348020000003"})
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );

    for (grid, name) in [(g1, "On G1"), (g2, "On G2")] {
        let r = app
            .post(
                "/api/v1/customers",
                &sales,
                json!({"grid_id": grid, "full_name": name}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    // The agent sees its grid's customers only, and its own grid only.
    let me = app.get("/api/v1/me", &agent_token).await;
    assert_eq!(me.body["account_type"], "AGENT");
    assert_eq!(me.body["grid_id"], g1);
    let seen = app.get("/api/v1/customers", &agent_token).await;
    let names: Vec<_> = seen.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["full_name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["On G1"]);
    assert!(
        app.get(&format!("/api/v1/customers?grid_id={g2}"), &agent_token)
            .await
            .body["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        app.get(&format!("/api/v1/grids/{g2}"), &agent_token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&format!("/api/v1/grids/{g1}"), &agent_token)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.post(
            "/api/v1/customers",
            &agent_token,
            json!({"grid_id": g1, "full_name": "X"})
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );

    let r = app
        .patch(
            &format!("/api/v1/agents/{agent}"),
            &sales,
            json!({"grid_id": g2, "email": "vic@a.test"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["grid_id"], g2);
    assert_eq!(r.body["email"], "vic@a.test");
    let list = app
        .get(&format!("/api/v1/agents?grid_id={g2}"), &sales)
        .await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);

    assert_eq!(
        app.delete(&format!("/api/v1/agents/{agent}"), &sales)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get("/api/v1/me", &agent_token).await.status,
        StatusCode::UNAUTHORIZED,
        "a deleted agent's login stops"
    );
}

#[actix_web::test]
async fn a_customer_sees_only_itself() {
    let app = TestApp::start().await;
    let a = app.organization("A").await;
    let g = app.grid(a, "G").await;
    let (_, manager) = app.member(a, "MANAGER").await;
    let me = app
        .post(
            "/api/v1/customers",
            &manager,
            json!({"grid_id": g, "full_name": "Me", "phone": "+2348030000001"}),
        )
        .await;
    let other = app
        .post(
            "/api/v1/customers",
            &manager,
            json!({"grid_id": g, "full_name": "Neighbour"}),
        )
        .await;
    let tok = As::Token(tiamat_tests::token(
        me.body["auth_user_id"].as_str().unwrap(),
        600,
    ));
    let list = app.get("/api/v1/customers", &tok).await;
    assert_eq!(list.status, StatusCode::OK);
    let items = list.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], me.body["id"]);
    let other_id = other.body["id"].as_i64().unwrap();
    assert_eq!(
        app.get(&format!("/api/v1/customers/{other_id}"), &tok)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/api/v1/members", &tok).await.status,
        StatusCode::FORBIDDEN
    );
}
