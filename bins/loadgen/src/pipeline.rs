//! `loadgen pipeline`: end-to-end command latency through meter-sim. Starts the simulator in this
//! process (zero simulated latency, no faults) on the gRPC address tiamat was configured with,
//! sets up an energised grid with an online gateway and `meters` LoRaWAN meters through the API,
//! then sends `commands` commands one at a time and times each from the POST to the moment the
//! API reports it SUCCESSFUL (polling its delivery status every millisecond).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

pub struct Args {
    pub url: String,
    pub key: String,
    pub grid: i64,
    pub secret: String,
    pub sim_listen: std::net::SocketAddr,
    pub meters: usize,
    pub commands: usize,
}

struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}/api/v1{path}", self.base))
            .header("X-API-Key", &self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{path}: {status} {body}");
        }
        Ok(body)
    }
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let sim = meter_sim::start(meter_sim::SimConfig {
        grpc_listen: a.sim_listen,
        webhook: Some(meter_sim::Webhook {
            url: format!("{}/api/v1/integrations/chirpstack/events", a.url).parse()?,
            secret: Some(a.secret.clone()),
        }),
        latency: Duration::ZERO,
        ..meter_sim::SimConfig::default()
    })
    .await
    .context("meter-sim")?;
    let api = Api {
        http: reqwest::Client::new(),
        base: a.url.clone(),
        key: a.key.clone(),
    };
    let grid = a.grid;
    let gw = api
        .call(reqwest::Method::POST, "/dcus", Some(json!({"external_system": "CHIRPSTACK", "external_reference": "0016c001f153a14c", "communication_protocol": "CALIN_LORAWAN"})))
        .await?;
    let gw = gw["id"].as_i64().context("gateway id")?;
    api.call(
        reqwest::Method::POST,
        &format!("/dcus/{gw}/assign"),
        Some(json!({"grid_id": grid})),
    )
    .await?;
    api.call(
        reqwest::Method::PUT,
        "/dcus/state",
        Some(json!({"states": [{"id": gw, "is_online": true}]})),
    )
    .await?;
    api.call(
        reqwest::Method::PUT,
        &format!("/grids/{grid}/state"),
        Some(json!({"is_hps_on": true})),
    )
    .await?;
    let mut meters = Vec::new();
    for i in 0..a.meters {
        let c = api
            .call(
                reqwest::Method::POST,
                "/customers",
                Some(json!({"grid_id": grid, "full_name": format!("Latency {i}")})),
            )
            .await?;
        let conn = api
            .call(
                reqwest::Method::POST,
                "/connections",
                Some(json!({"customer_id": c["id"]})),
            )
            .await?;
        let m = api
            .call(reqwest::Method::POST, "/meters", Some(json!({"external_system": "CALIN", "external_reference": format!("{}", 47_600_000_000u64 + i as u64), "communication_protocol": "CALIN_LORAWAN"})))
            .await?;
        let id = m["id"].as_i64().context("meter id")?;
        api.call(
            reqwest::Method::POST,
            &format!("/meters/{id}/assign"),
            Some(json!({"connection_id": conn["id"]})),
        )
        .await?;
        api.call(
            reqwest::Method::PUT,
            "/meters/state",
            Some(json!({"states": [{"id": id, "last_seen_at": chrono::Utc::now().to_rfc3339()}]})),
        )
        .await?;
        meters.push(id);
    }

    let mut samples = Vec::with_capacity(a.commands);
    let mut failed = 0usize;
    for i in 0..a.commands {
        let meter = meters[i % meters.len()];
        // Alternate so every command is a real change (nothing coalesces).
        let kind = if (i / meters.len()) % 2 == 0 {
            "TURN_OFF"
        } else {
            "TURN_ON"
        };
        let t0 = Instant::now();
        let created = api
            .call(
                reqwest::Method::POST,
                &format!("/meters/{meter}/commands"),
                Some(json!({"kind": kind})),
            )
            .await?;
        let id = created["id"].as_i64().context("interaction id")?;
        let deadline = t0 + Duration::from_secs(30);
        loop {
            let d = api
                .call(
                    reqwest::Method::GET,
                    &format!("/interactions/{id}/delivery"),
                    None,
                )
                .await?;
            match d["status"].as_str() {
                Some("SUCCESSFUL") => {
                    samples.push(t0.elapsed().as_secs_f64() * 1000.0);
                    break;
                }
                Some("FAILED" | "ABORTED" | "EXPIRED" | "SUPERSEDED") => {
                    failed += 1;
                    break;
                }
                _ if Instant::now() > deadline => {
                    failed += 1;
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
    }
    samples.sort_by(|x, y| x.total_cmp(y));
    let p = |q: f64| crate::percentile(&samples, q);
    let counters = sim.counters();
    println!(
        "{}",
        json!({
            "commands": a.commands,
            "successful": samples.len(),
            "failed": failed,
            "p50_ms": (p(50.0) * 10.0).round() / 10.0,
            "p90_ms": (p(90.0) * 10.0).round() / 10.0,
            "p99_ms": (p(99.0) * 10.0).round() / 10.0,
            "max_ms": (p(100.0) * 10.0).round() / 10.0,
            "share_of_2s_budget_p50_pct": (p(50.0) / 2000.0 * 1000.0).round() / 10.0,
            "share_of_2s_budget_p99_pct": (p(99.0) / 2000.0 * 1000.0).round() / 10.0,
            "sim_downlinks": counters.downlinks_received,
        })
    );
    sim.shutdown().await;
    Ok(())
}
