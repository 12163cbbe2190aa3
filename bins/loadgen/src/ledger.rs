//! `loadgen ledger`: wallet-to-wallet transfers through `POST /api/v1/orders` between random
//! pairs of the given wallets, at a fixed concurrency for a fixed time. Prints one JSON line:
//! completed transfers per second, failures, and latency percentiles.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::percentile;

pub struct Args {
    pub url: String,
    pub key: String,
    /// Wallets of this owner type take part (listed through the API).
    pub owner_type: String,
    pub concurrency: usize,
    pub seconds: u64,
    pub currency: String,
}

/// Every wallet id of `owner_type`, page by page.
async fn wallets(http: &reqwest::Client, a: &Args) -> anyhow::Result<Vec<i64>> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!(
            "{}/api/v1/wallets?owner_type={}&limit=500",
            a.url, a.owner_type
        );
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = http
            .get(&url)
            .header("X-API-Key", &a.key)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        for w in page["items"].as_array().context("wallet page")? {
            ids.push(w["id"].as_i64().context("wallet id")?);
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    Ok(ids)
}

/// A small xorshift: random pairs without a dependency.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(a.concurrency)
        .build()?;
    let ids = Arc::new(wallets(&http, &a).await?);
    if ids.len() < 2 {
        bail!(
            "need at least two {} wallets, found {}",
            a.owner_type,
            ids.len()
        );
    }
    let endpoint = format!("{}/api/v1/orders", a.url);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..a.concurrency {
        let (http, endpoint, key, ids, stop, currency) = (
            http.clone(),
            endpoint.clone(),
            a.key.clone(),
            ids.clone(),
            stop.clone(),
            a.currency.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ ((worker as u64 + 1) << 32);
            let (mut completed, mut failed, mut errors) = (0usize, 0usize, 0usize);
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let n = ids.len() as u64;
                let i = next(&mut seed) % n;
                let j = (i + 1 + next(&mut seed) % (n - 1)) % n;
                let amount = 1 + next(&mut seed) % 100;
                let body = json!({
                    "sender_wallet_id": ids[i as usize], "receiver_wallet_id": ids[j as usize],
                    "amount": amount, "currency": currency,
                });
                let t = Instant::now();
                let answer = http
                    .post(&endpoint)
                    .header("X-API-Key", &key)
                    .json(&body)
                    .send()
                    .await;
                let status = match answer {
                    Ok(r) if r.status().is_success() => r
                        .json::<Value>()
                        .await
                        .ok()
                        .and_then(|v| v["status"].as_str().map(str::to_owned)),
                    _ => None,
                };
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                match status.as_deref() {
                    Some("COMPLETED") => completed += 1,
                    Some(_) => failed += 1,
                    None => errors += 1,
                }
            }
            (completed, failed, errors, latencies)
        }));
    }
    tokio::time::sleep(Duration::from_secs(a.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut completed, mut failed, mut errors) = (0, 0, 0);
    let mut latencies = Vec::new();
    for t in tasks {
        let (c, f, e, l) = t.await?;
        completed += c;
        failed += f;
        errors += e;
        latencies.extend(l);
    }
    let secs = started.elapsed().as_secs_f64();
    latencies.sort_by(|a, b| a.total_cmp(b));
    let out = json!({
        "wallets": ids.len(), "concurrency": a.concurrency, "seconds": (secs * 100.0).round() / 100.0,
        "completed": completed, "failed": failed, "errors": errors,
        "transfers_per_second": (completed as f64 / secs).round(),
        "p50_ms": percentile(&latencies, 50.0), "p99_ms": percentile(&latencies, 99.0),
    });
    println!("{out}");
    Ok(())
}
