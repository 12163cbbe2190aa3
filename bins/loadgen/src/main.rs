//! `loadgen ws-fanout`: opens thousands of WebSocket subscribers spread over many grids, changes
//! grid state through the REST API one grid at a time, and measures how long each change takes to
//! reach every subscriber of that grid (from just before the PUT is sent to receipt: an upper
//! bound on commit-to-delivery).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

mod ledger;
mod pipeline;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    WsFanout {
        /// Base URL, e.g. http://127.0.0.1:18181
        #[arg(long)]
        url: String,
        #[arg(long)]
        key: String,
        #[arg(long, default_value_t = 100)]
        grids: usize,
        #[arg(long, default_value_t = 5000)]
        subscribers: usize,
        /// State changes to time (one grid at a time, round robin).
        #[arg(long, default_value_t = 100)]
        changes: usize,
    },
    /// End-to-end command latency through an in-process meter-sim (see pipeline.rs).
    Pipeline {
        #[arg(long)]
        url: String,
        #[arg(long)]
        key: String,
        /// The grid to put the meters on (bootstrap's demo grid).
        #[arg(long)]
        grid: i64,
        /// tiamat's ChirpStack webhook secret.
        #[arg(long)]
        secret: String,
        /// Where the simulator serves gRPC (tiamat's TIAMAT_CHIRPSTACK_API_URL).
        #[arg(long, default_value = "127.0.0.1:18191")]
        sim_listen: std::net::SocketAddr,
        #[arg(long, default_value_t = 5)]
        meters: usize,
        #[arg(long, default_value_t = 300)]
        commands: usize,
    },
    /// Wallet-to-wallet transfers through POST /api/v1/orders (see ledger.rs).
    Ledger {
        #[arg(long)]
        url: String,
        /// An API key that may move the wallets' money (a SUPERADMIN's).
        #[arg(long)]
        key: String,
        #[arg(long, default_value = "AGENT")]
        owner_type: String,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        #[arg(long, default_value = "NGN")]
        currency: String,
    },
    /// Posts unique ChirpStack `up` events to the webhook as fast as it can.
    Webhook {
        #[arg(long)]
        url: String,
        #[arg(long)]
        secret: String,
        #[arg(long, default_value_t = 20_000)]
        events: usize,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::WsFanout {
            url,
            key,
            grids,
            subscribers,
            changes,
        } => ws_fanout(url, key, grids, subscribers, changes).await,
        Command::Webhook {
            url,
            secret,
            events,
            concurrency,
        } => webhook(url, secret, events, concurrency).await,
        Command::Ledger {
            url,
            key,
            owner_type,
            concurrency,
            seconds,
            currency,
        } => {
            ledger::run(ledger::Args {
                url,
                key,
                owner_type,
                concurrency,
                seconds,
                currency,
            })
            .await
        }
        Command::Pipeline {
            url,
            key,
            grid,
            secret,
            sim_listen,
            meters,
            commands,
        } => {
            pipeline::run(pipeline::Args {
                url,
                key,
                grid,
                secret,
                sim_listen,
                meters,
                commands,
            })
            .await
        }
    }
}

async fn webhook(
    url: String,
    secret: String,
    events: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let endpoint = format!("{url}/api/v1/integrations/chirpstack/events?event=up");
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let run = std::process::id();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (http, endpoint, secret, next) =
            (http.clone(), endpoint.clone(), secret.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut stored = 0usize;
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= events {
                    break;
                }
                let body = json!({
                    "deduplicationId": format!("bench-{run}-{i}"), "time": "2026-11-27T10:00:00Z",
                    "deviceInfo": {"devEui": format!("{:016x}", i % 10_000)}, "fCnt": i, "fPort": 1, "data": "aGk=",
                    "rxInfo": [{"gatewayId": "0016c001f153a14c", "rssi": -90, "snr": 7.0}]
                });
                let t = Instant::now();
                let ok = http
                    .post(&endpoint)
                    .header("X-Webhook-Token", &secret)
                    .json(&body)
                    .send()
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false);
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                stored += usize::from(ok);
            }
            (stored, latencies)
        }));
    }
    let mut stored = 0;
    let mut latencies = Vec::new();
    for t in tasks {
        let (s, l) = t.await?;
        stored += s;
        latencies.extend(l);
    }
    let secs = started.elapsed().as_secs_f64();
    latencies.sort_by(|a, b| a.total_cmp(b));
    let out = json!({
        "events": events, "accepted": stored, "seconds": (secs * 100.0).round() / 100.0,
        "events_per_second": (stored as f64 / secs).round(),
        "p50_ms": percentile(&latencies, 50.0), "p99_ms": percentile(&latencies, 99.0),
    });
    println!("{out}");
    Ok(())
}

async fn ws_fanout(
    url: String,
    key: String,
    grids: usize,
    subscribers: usize,
    changes: usize,
) -> anyhow::Result<()> {
    let http = reqwest::Client::new();

    let mut grid_ids = Vec::with_capacity(grids);
    let run = std::process::id();
    for i in 0..grids {
        let r = http
            .post(format!("{url}/api/v1/grids"))
            .header("X-API-Key", &key)
            .json(&json!({"name": format!("fanout-{run}-{i}"), "currency": "NGN"}))
            .send()
            .await?;
        let body: Value = r.json().await?;
        grid_ids.push(body["id"].as_i64().context("grid id")?);
    }

    let ws_url = format!("{}/api/v1/ws", url.replacen("http", "ws", 1));
    let (tx, mut rx) = mpsc::unbounded_channel::<(i64, Instant)>();
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<()>();
    let gate = Arc::new(Semaphore::new(200));
    for i in 0..subscribers {
        let grid = grid_ids[i % grids];
        let (tx, ready_tx, gate) = (tx.clone(), ready_tx.clone(), gate.clone());
        let (ws_url, key) = (ws_url.clone(), key.clone());
        tokio::spawn(async move {
            let permit = gate.acquire_owned().await;
            let Ok(mut req) = ws_url.into_client_request() else {
                return;
            };
            let Ok(value) = key.parse() else { return };
            req.headers_mut().insert("X-API-Key", value);
            let Ok((mut ws, _)) = tokio_tungstenite::connect_async(req).await else {
                eprintln!("loadgen: a subscriber could not connect");
                return;
            };
            let sub = json!({"type": "subscribe", "grid_id": grid}).to_string();
            if ws.send(Message::Text(sub.into())).await.is_err() {
                return;
            }
            drop(permit);
            while let Some(Ok(msg)) = ws.next().await {
                let Message::Text(text) = msg else { continue };
                let Ok(v) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                match v["type"].as_str() {
                    Some("subscribed") => {
                        let _ = ready_tx.send(());
                    }
                    Some("grid") => {
                        let _ = tx.send((v["grid_id"].as_i64().unwrap_or(-1), Instant::now()));
                    }
                    _ => {}
                }
            }
        });
    }
    drop(ready_tx);
    let connect_started = Instant::now();
    let mut ready = 0;
    while ready < subscribers {
        match tokio::time::timeout(Duration::from_secs(60), ready_rx.recv()).await {
            Ok(Some(())) => ready += 1,
            _ => bail!("only {ready} of {subscribers} subscribers connected"),
        }
    }
    let connect_secs = connect_started.elapsed().as_secs_f64();

    let per_grid: Vec<usize> = (0..grids)
        .map(|g| (0..subscribers).filter(|i| i % grids == g).count())
        .collect();
    let mut latencies_ms = Vec::with_capacity(changes * subscribers / grids.max(1));
    let mut lost = 0usize;
    for round in 0..changes {
        let g = round % grids;
        let grid = grid_ids[g];
        let started = Instant::now();
        let r = http
            .put(format!("{url}/api/v1/grids/{grid}/state"))
            .header("X-API-Key", &key)
            .json(&json!({"is_fs_on": round % 2 == 0}))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("state change answered {}", r.status());
        }
        let mut got = 0;
        let deadline = started + Duration::from_secs(5);
        while got < per_grid[g] {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, rx.recv()).await {
                Ok(Some((gid, at))) if gid == grid => {
                    got += 1;
                    latencies_ms.push(at.duration_since(started).as_secs_f64() * 1000.0);
                }
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        lost += per_grid[g] - got;
    }
    latencies_ms.sort_by(|a, b| a.total_cmp(b));
    let out = json!({
        "subscribers": subscribers,
        "grids": grids,
        "changes": changes,
        "connect_seconds": (connect_secs * 100.0).round() / 100.0,
        "deliveries": latencies_ms.len(),
        "lost": lost,
        "p50_ms": percentile(&latencies_ms, 50.0),
        "p99_ms": percentile(&latencies_ms, 99.0),
        "max_ms": latencies_ms.last().copied().unwrap_or(0.0),
    });
    println!("{out}");
    Ok(())
}
