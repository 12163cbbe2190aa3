//! Test harness: a database per test cloned from a migrated template, the whole app in process,
//! and helpers to mint tokens and call the API.
//!
//! `TIAMAT_TEST_DATABASE_URL` names a server where the user may create databases (`just test`
//! provides one).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::from_fn;
use actix_web::test::{TestRequest, init_service};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::{Value, json};
use tiamat::config::{Config, LogFormat};
use url::Url;
use uuid::Uuid;

pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123";
pub const WEBHOOK_SECRET: &str = "chirpstack-webhook-secret-for-tests";

fn admin_url() -> String {
    std::env::var("TIAMAT_TEST_DATABASE_URL")
        .or_else(|_| std::env::var("TIAMAT_DATABASE_URL"))
        .expect("TIAMAT_TEST_DATABASE_URL is not set: run the tests with `just test`, which starts PostgreSQL")
}

fn with_database(url: &str, db: &str) -> String {
    let mut u = Url::parse(url).expect("database URL");
    u.set_path(&format!("/{db}"));
    u.to_string()
}

/// Name of the template for the current migrations: a changed migration gets a new template.
fn template_name() -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let mut files: Vec<_> = walk(&dir);
    files.sort();
    let mut h = DefaultHasher::new();
    for f in files {
        f.hash(&mut h);
        std::fs::read(&f).unwrap_or_default().hash(&mut h);
    }
    format!("tiamat_test_tpl_{:x}", h.finish())
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

async fn exec(conn: &mut AsyncPgConnection, sql: &str) -> Result<usize, diesel::result::Error> {
    diesel::sql_query(sql).execute(conn).await
}

#[derive(diesel::QueryableByName)]
struct Exists {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    exists: bool,
}

async fn ensure_template(admin: &mut AsyncPgConnection, name: &str) {
    // Tests run as separate processes under nextest: one creates the template, the rest wait.
    exec(admin, "SELECT pg_advisory_lock(874512)")
        .await
        .expect("advisory lock");
    let found: Exists = diesel::sql_query(format!(
        "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = '{name}') AS exists"
    ))
    .get_result(admin)
    .await
    .expect("pg_database");
    if !found.exists {
        let building = format!("{name}_building");
        let _ = exec(
            admin,
            &format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"),
        )
        .await;
        exec(admin, &format!("CREATE DATABASE {building}"))
            .await
            .expect("create template");
        let db = store::Db::connect(&with_database(&admin_url(), &building), 1).expect("pool");
        db.migrate().await.expect("migrate template");
        drop(db);
        // Renaming needs the template to have no connections; the pool's may take a moment to go.
        let mut renamed = false;
        for _ in 0..50 {
            if exec(
                admin,
                &format!("ALTER DATABASE {building} RENAME TO {name}"),
            )
            .await
            .is_ok()
            {
                renamed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(renamed, "could not finish the template database");
    }
    exec(admin, "SELECT pg_advisory_unlock(874512)")
        .await
        .expect("advisory unlock");
}

/// A fresh database for one test, dropped when the test ends (pass or fail).
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn new() -> Self {
        let admin = admin_url();
        let mut conn = AsyncPgConnection::establish(&admin)
            .await
            .expect("connect to the test server");
        let template = template_name();
        ensure_template(&mut conn, &template).await;
        let name = format!("tiamat_test_{}", Uuid::new_v4().simple());
        let mut last = None;
        for _ in 0..50 {
            match exec(
                &mut conn,
                &format!("CREATE DATABASE {name} TEMPLATE {template}"),
            )
            .await
            {
                Ok(_) => {
                    last = None;
                    break;
                }
                // "source database is being accessed by other users": retry shortly.
                Err(e) => {
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        if let Some(e) = last {
            panic!("could not create test database: {e}");
        }
        let url = with_database(&admin, &name);
        TestDb { name, url }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin = admin_url();
        // Drop from a thread of its own: Drop cannot await, and the test's runtime may be gone.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(mut c) = AsyncPgConnection::establish(&admin).await {
                    let _ = exec(
                        &mut c,
                        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                    )
                    .await;
                }
            });
        })
        .join();
    }
}

pub fn config(db_url: &str) -> Config {
    Config {
        database_url: secrecy::SecretString::from(db_url.to_owned()),
        listen: "127.0.0.1:0".parse().expect("addr"),
        jwt_secret: Some(secrecy::SecretString::from(JWT_SECRET.to_owned())),
        jwks_url: None,
        jwt_audience: "authenticated".into(),
        jwt_issuer: None,
        auto_migrate: false,
        log: "warn".into(),
        log_format: LogFormat::Pretty,
        pool_size: 4,
        supabase: None,
        jwks_ttl: Duration::from_secs(300),
        api_key_cache_ttl: Duration::from_secs(5),
        chirpstack_webhook_secret: Some(secrecy::SecretString::from(WEBHOOK_SECRET.to_owned())),
        sts_generator_url: None,
        sts_generator_api_key: None,
        chirpstack_api: None,
        delivery: meters::DeliveryTimings::default(),
        payments: tiamat::config::PaymentsConfig::default(),
    }
}

/// Who sends a request.
#[derive(Debug, Clone)]
pub enum As {
    Nobody,
    Key(String),
    Token(String),
}

/// The whole application in process on its own database.
pub struct TestApp {
    pub db: TestDb,
    pub app: tiamat::App,
    service: Box<
        dyn Service<
                actix_http::Request,
                Response = ServiceResponse<actix_web::body::BoxBody>,
                Error = actix_web::Error,
                Future = BoxedFuture,
            >,
    >,
    /// The platform organization's SUPERADMIN key.
    pub root: As,
    pub platform_org: i64,
}

pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub headers: actix_web::http::header::HeaderMap,
}

impl TestApp {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start_with_state(tweak, |_| {}).await
    }

    /// Like [`TestApp::start_with`], and `adapt` may replace adapters in the state the routes
    /// see (e.g. a fake network server as `devices`).
    pub async fn start_with_state(
        tweak: impl FnOnce(&mut Config),
        adapt: impl FnOnce(&mut api::AppState),
    ) -> Self {
        let db = TestDb::new().await;
        let mut cfg = config(&db.url);
        tweak(&mut cfg);
        let mut app = tiamat::build(&cfg).expect("build app");
        adapt(&mut app.state);
        let boot = tiamat::bootstrap::run(&app, "Platform", "root@platform.test", false)
            .await
            .expect("bootstrap");
        let state = app.state.clone();
        let service = init_service(
            actix_web::App::new()
                .wrap(from_fn(api::middleware::request_context))
                .configure(api::configure(state)),
        )
        .await;
        let service = Box::new(BoxedService(service));
        TestApp {
            db,
            app,
            service,
            root: As::Key(boot.api_key),
            platform_org: boot.organization_id,
        }
    }

    pub async fn call(&self, method: Method, path: &str, who: &As, body: Option<Value>) -> Reply {
        let mut req = TestRequest::default().method(method).uri(path);
        match who {
            As::Nobody => {}
            As::Key(k) => req = req.insert_header(("X-API-Key", k.as_str())),
            As::Token(t) => req = req.insert_header(("Authorization", format!("Bearer {t}"))),
        }
        if let Some(b) = body {
            req = req.set_json(b);
        }
        self.send(req.to_request()).await
    }

    pub async fn send(&self, req: actix_http::Request) -> Reply {
        let res = self.service.call(req).await.expect("service call");
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = actix_web::body::to_bytes(res.into_body())
            .await
            .unwrap_or_default();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Reply {
            status,
            body,
            headers,
        }
    }

    pub async fn get(&self, path: &str, who: &As) -> Reply {
        self.call(Method::GET, path, who, None).await
    }
    pub async fn post(&self, path: &str, who: &As, body: Value) -> Reply {
        self.call(Method::POST, path, who, Some(body)).await
    }
    pub async fn patch(&self, path: &str, who: &As, body: Value) -> Reply {
        self.call(Method::PATCH, path, who, Some(body)).await
    }
    pub async fn put(&self, path: &str, who: &As, body: Value) -> Reply {
        self.call(Method::PUT, path, who, Some(body)).await
    }
    pub async fn delete(&self, path: &str, who: &As) -> Reply {
        self.call(Method::DELETE, path, who, None).await
    }

    /// Creates an organization as the platform SUPERADMIN and returns its id.
    pub async fn organization(&self, name: &str) -> i64 {
        let r = self
            .post("/api/v1/organizations", &self.root, json!({"name": name}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        r.body["id"].as_i64().expect("id")
    }

    /// Invites a member with `role` into `org` and returns (member id, a valid token for it).
    pub async fn member(&self, org: i64, role: &str) -> (i64, As) {
        let email = format!("{}@{}.test", role.to_lowercase(), Uuid::new_v4().simple());
        let r = self
            .post("/api/v1/members", &self.root, json!({"email": email, "full_name": format!("{role} person"), "role": role, "organization_id": org}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let sub = r.body["auth_user_id"]
            .as_str()
            .expect("auth_user_id")
            .to_owned();
        (
            r.body["id"].as_i64().expect("id"),
            As::Token(token(&sub, 3600)),
        )
    }

    /// An API key for `org` with `role`, issued by the platform SUPERADMIN.
    pub async fn key(&self, org: i64, role: &str) -> As {
        let r = self
            .post(
                "/api/v1/api-keys",
                &self.root,
                json!({"name": "test", "role": role, "organization_id": org}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        As::Key(r.body["secret"].as_str().expect("secret").to_owned())
    }

    /// A grid in `org` (as the platform SUPERADMIN).
    pub async fn grid(&self, org: i64, name: &str) -> i64 {
        let r = self
            .post(
                "/api/v1/grids",
                &self.root,
                json!({"name": name, "currency": "NGN", "organization_id": org}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        r.body["id"].as_i64().expect("id")
    }

    /// A ChirpStack CALIN LoRaWAN gateway on `grid`, reported online by `service` (an API key
    /// with the SERVICE role). Returns its id.
    pub async fn online_gateway(&self, manager: &As, service: &As, grid: i64, name: &str) -> i64 {
        let r = self
            .post(
                "/api/v1/dcus",
                manager,
                json!({"external_system": "CHIRPSTACK", "external_reference": format!("gw-{name}"),
                       "communication_protocol": "CALIN_LORAWAN"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let gateway = r.body["id"].as_i64().expect("id");
        let r = self
            .post(
                &format!("/api/v1/dcus/{gateway}/assign"),
                manager,
                json!({"grid_id": grid}),
            )
            .await;
        assert!(r.status.is_success(), "{:?}", r.body);
        self.gateway_online(service, gateway, true).await;
        gateway
    }

    /// Reports the gateway online or offline (as the DCU snapshot job would).
    pub async fn gateway_online(&self, service: &As, gateway: i64, online: bool) {
        let r = self
            .put(
                "/api/v1/dcus/state",
                service,
                json!({"states": [{"id": gateway, "is_online": online}]}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }

    /// Sets the grid's high-power supply on or off (energised or not).
    pub async fn energise(&self, service: &As, grid: i64, on: bool) {
        let r = self
            .put(
                &format!("/api/v1/grids/{grid}/state"),
                service,
                json!({"is_hps_on": on}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }

    /// A customer on `grid` with a connection, and a meter created from `meter` (the body of
    /// `POST /meters`) assigned to it. Returns the meter's id.
    pub async fn connected_meter(&self, manager: &As, grid: i64, meter: Value) -> i64 {
        let c = self
            .post(
                "/api/v1/customers",
                manager,
                json!({"grid_id": grid, "full_name": "C"}),
            )
            .await;
        assert_eq!(c.status, StatusCode::CREATED, "{:?}", c.body);
        let conn = self
            .post(
                "/api/v1/connections",
                manager,
                json!({"customer_id": c.body["id"]}),
            )
            .await;
        assert_eq!(conn.status, StatusCode::CREATED, "{:?}", conn.body);
        let m = self.post("/api/v1/meters", manager, meter).await;
        assert!(m.status.is_success(), "{:?}", m.body);
        let id = m.body["id"].as_i64().expect("id");
        let r = self
            .post(
                &format!("/api/v1/meters/{id}/assign"),
                manager,
                json!({"connection_id": conn.body["id"]}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        id
    }

    /// Records that the meter was heard from just now (a LoRaWAN meter unseen for 24 h is
    /// refused commands).
    pub async fn heard_now(&self, service: &As, meter: i64) {
        let now = chrono::Utc::now().to_rfc3339();
        let r = self
            .put(
                "/api/v1/meters/state",
                service,
                json!({"states": [{"id": meter, "last_seen_at": now}]}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }
}

type BoxedFuture = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error>,
            >,
    >,
>;

struct BoxedService<S>(S);

impl<S, B> Service<actix_http::Request> for BoxedService<S>
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    S::Future: 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<actix_web::body::BoxBody>;
    type Error = actix_web::Error;
    type Future = BoxedFuture;

    actix_web::dev::always_ready!();

    fn call(&self, req: actix_http::Request) -> Self::Future {
        let fut = self.0.call(req);
        Box::pin(async move { fut.await.map(|r| r.map_into_boxed_body()) })
    }
}

/// Claims of a Supabase-like access token.
pub fn claims(sub: &str, exp_in: i64) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({"sub": sub, "aud": "authenticated", "role": "authenticated", "exp": now + exp_in, "iat": now, "email": "x@y.test"})
}

pub fn sign(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

pub fn token(sub: &str, exp_in: i64) -> String {
    sign(&claims(sub, exp_in), JWT_SECRET)
}

/// One instance of a scaled-out deployment: a real HTTP server on 127.0.0.1 (an ephemeral port)
/// with its own `tiamat::build` App, WebSocket hub and live-event listener, on a given database.
/// Several on one database behave like instances behind a load balancer.
pub struct Server {
    pub addr: std::net::SocketAddr,
    pub app: tiamat::App,
    pub live: store::listener::ListenerHandle,
    handle: actix_web::dev::ServerHandle,
}

impl Server {
    /// Starts an instance and waits until its listener is listening. Call inside an actix runtime.
    pub async fn start(cfg: &Config, hub: api::ws::HubConfig) -> Server {
        use secrecy::ExposeSecret;
        let mut app = tiamat::build(cfg).expect("build app");
        app.state.hub = api::ws::Hub::new(hub);
        let live = app.spawn_live_listener(cfg.database_url.expose_secret().to_owned());
        assert!(
            live.wait_listening(Duration::from_secs(10)).await,
            "the live-event listener did not start"
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let state = app.state.clone();
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new()
                .wrap(from_fn(api::middleware::request_context))
                .configure(api::configure(state.clone()))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)
        .expect("listen")
        .run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Server {
            addr,
            app,
            live,
            handle,
        }
    }

    /// `http://127.0.0.1:port{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // `stop` sends the command at once; its future only waits for completion.
        drop(self.handle.stop(false));
    }
}

impl TestApp {
    /// Another instance on this test's database (see [`Server`]).
    pub async fn serve(&self) -> Server {
        self.serve_with(api::ws::HubConfig::default()).await
    }

    pub async fn serve_with(&self, hub: api::ws::HubConfig) -> Server {
        Server::start(&config(&self.db.url), hub).await
    }
}
