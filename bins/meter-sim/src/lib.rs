//! A simulated ChirpStack and fleet of CALIN LoRaWAN meters, for development and tests.
//!
//! It serves ChirpStack's `DeviceService` over gRPC on loopback (what tiamat's ChirpStack
//! adapter calls: create/delete devices and keys, enqueue downlinks, read and flush queues) and
//! answers each downlink the way a real network and meter would: through ChirpStack's HTTP
//! integration, posting `txack`, then `ack` and `up` (in either order, sharing a deduplication
//! id) to a webhook URL. Each meter decodes the CALIN frame, executes it on its state and
//! answers with a CALIN reply frame.
//!
//! Faults are drawn per downlink from a seeded RNG, so a run is reproducible:
//! `loss` (transmitted, then nothing), `ack_false` (the device did not acknowledge), `nak` (the
//! meter refuses), `ghost` (executed, but the acknowledgement and reply are lost).
//!
//! In-process use (tests): [`start`] gives a [`SimHandle`] to read counters and meter state, set
//! a meter's state, tell a meter what a token means, and change faults while running.

mod events;
mod meter;
mod service;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use calin::{MeterAddress, StsToken};
use chirpstack_api::api;
use chirpstack_api::api::device_service_server::DeviceServiceServer;
use chirpstack_api::tonic::transport::Server;
use chirpstack_api::tonic::transport::server::TcpIncoming;
use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use url::Url;

pub use meter::{MeterState, TokenEffect};

use crate::events::{DeviceMeta, Radio};
use crate::meter::Meter;

/// The application and device profile auto-registered meters belong to (ChirpStack UUIDs).
pub const DEFAULT_APPLICATION_ID: &str = "00000000-0000-4000-8000-0000000000a1";
pub const DEFAULT_DEVICE_PROFILE_ID: &str = "00000000-0000-4000-8000-0000000000b1";

/// Where events go: tiamat's `POST …/integrations/chirpstack/events`, with its shared secret.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: Url,
    /// Sent as `X-Webhook-Token`.
    pub secret: Option<String>,
}

/// Probabilities (0 to 1, summing to at most 1) of what goes wrong with one downlink.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Faults {
    /// Transmitted (`txack`), then nothing: the meter never got it.
    pub loss: f64,
    /// The meter got it and refused it (a CALIN refusal frame).
    pub nak: f64,
    /// The meter executed it, but the `ack` and `up` were lost.
    pub ghost: f64,
    /// The device did not acknowledge (`ack` with `acknowledged: false`); not executed.
    pub ack_false: f64,
}

impl Faults {
    pub fn validate(&self) -> anyhow::Result<()> {
        let all = [
            ("loss", self.loss),
            ("nak", self.nak),
            ("ghost", self.ghost),
            ("ack_false", self.ack_false),
        ];
        for (name, p) in all {
            anyhow::ensure!(
                (0.0..=1.0).contains(&p),
                "{name} must be a probability from 0 to 1, not {p}"
            );
        }
        let sum: f64 = all.iter().map(|(_, p)| p).sum();
        anyhow::ensure!(
            sum <= 1.0 + 1e-9,
            "the fault probabilities add up to {sum}, more than 1"
        );
        Ok(())
    }

    fn draw(&self, roll: f64) -> Outcome {
        let mut edge = self.loss;
        if roll < edge {
            return Outcome::Loss;
        }
        edge += self.ack_false;
        if roll < edge {
            return Outcome::AckFalse;
        }
        edge += self.nak;
        if roll < edge {
            return Outcome::Nak;
        }
        edge += self.ghost;
        if roll < edge {
            return Outcome::Ghost;
        }
        Outcome::Delivered
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Delivered,
    Loss,
    AckFalse,
    Nak,
    Ghost,
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Where the gRPC DeviceService listens (port 0: any free port).
    pub grpc_listen: SocketAddr,
    /// Unset: events are built and recorded ([`SimHandle::events`]) but not posted.
    pub webhook: Option<Webhook>,
    /// From enqueue to the `txack` and the meter's answer.
    pub latency: Duration,
    pub faults: Faults,
    /// Seed for the fault draws and event ordering; unset: random.
    pub seed: Option<u64>,
    /// Every meter sends its hourly report (`C111`) this often; unset: never.
    pub report_interval: Option<Duration>,
    /// An enqueue for an unknown device registers it (a meter with the default state) instead
    /// of failing like ChirpStack.
    pub auto_register: bool,
    /// When set, every gRPC call must carry `authorization: Bearer <token>`.
    pub api_token: Option<String>,
    /// The gateway every meter is heard through.
    pub gateway_id: String,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            webhook: None,
            latency: Duration::from_millis(200),
            faults: Faults::default(),
            seed: None,
            report_interval: None,
            auto_register: true,
            api_token: None,
            gateway_id: "0016c001f153a14c".into(),
        }
    }
}

/// What happened, overall or for one device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Enqueues accepted.
    pub downlinks_received: u64,
    /// Downlinks transmitted (`txack` events).
    pub txacks_sent: u64,
    /// Commands a meter executed (including ghosts).
    pub executed: u64,
    /// Reply uplinks (`up` answering a downlink), refusals included.
    pub replies_sent: u64,
    /// `ack` events, acknowledged or not.
    pub acks_sent: u64,
    /// Faults drawn.
    pub lost: u64,
    pub refused: u64,
    pub ghosted: u64,
    pub not_acknowledged: u64,
    /// Frames a meter did not answer: undecodable, or addressed to another meter.
    pub ignored: u64,
    /// Queue items flushed before they were sent.
    pub flushed: u64,
    /// Unsolicited hourly reports.
    pub reports_sent: u64,
    /// Webhook posts answered 2xx, and posts that failed (transport error or non-2xx).
    pub webhook_posts: u64,
    pub webhook_failures: u64,
}

/// An event the simulator produced, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct PostedEvent {
    /// `up`, `ack` or `txack`.
    pub event: String,
    pub dev_eui: String,
    /// The canonical JSON body.
    pub body: serde_json::Value,
    /// Whether the webhook answered 2xx (false also when no webhook is configured).
    pub delivered: bool,
}

/// Events kept for [`SimHandle::events`].
const EVENT_LOG_LEN: usize = 10_000;

struct Device {
    meta: DeviceMeta,
    /// The CALIN address a decimal DevEUI stands for; other DevEUIs answer nothing.
    address: Option<MeterAddress>,
    nwk_key: Option<String>,
    queue: Vec<api::DeviceQueueItem>,
    meter: Meter,
    f_cnt_up: u32,
    f_cnt_down: u32,
    counters: Counters,
    created_at: DateTime<Utc>,
}

impl Device {
    fn new(meta: DeviceMeta) -> Self {
        let address = meta
            .dev_eui
            .parse::<u64>()
            .ok()
            .and_then(|n| MeterAddress::from_number(n).ok());
        Self {
            meta,
            address,
            nwk_key: None,
            queue: Vec::new(),
            meter: Meter::default(),
            f_cnt_up: 0,
            f_cnt_down: 0,
            counters: Counters::default(),
            created_at: Utc::now(),
        }
    }

    fn auto(dev_eui: &str) -> Self {
        Self::new(DeviceMeta {
            dev_eui: dev_eui.to_owned(),
            name: dev_eui.trim_start_matches('0').to_owned(),
            application_id: DEFAULT_APPLICATION_ID.into(),
            device_profile_id: DEFAULT_DEVICE_PROFILE_ID.into(),
        })
    }
}

struct SimState {
    devices: BTreeMap<String, Device>,
    rng: StdRng,
    faults: Faults,
    latency: Duration,
    totals: Counters,
    events: VecDeque<PostedEvent>,
}

impl SimState {
    fn count(&mut self, dev_eui: &str, bump: impl Fn(&mut Counters)) {
        bump(&mut self.totals);
        if let Some(d) = self.devices.get_mut(dev_eui) {
            bump(&mut d.counters);
        }
    }
}

pub(crate) struct Shared {
    state: Mutex<SimState>,
    http: reqwest::Client,
    webhook: Option<Webhook>,
    auto_register: bool,
    api_token: Option<String>,
    radio: Radio,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, SimState> {
        // A panic while holding the lock leaves consistent-enough state for a simulator.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn post(&self, event: &'static str, dev_eui: &str, body: serde_json::Value) {
        let delivered = match &self.webhook {
            None => false,
            Some(w) => {
                let mut url = w.url.clone();
                url.query_pairs_mut().append_pair("event", event);
                let mut request = self.http.post(url).json(&body);
                if let Some(secret) = &w.secret {
                    request = request.header("X-Webhook-Token", secret);
                }
                match request.send().await {
                    Ok(r) if r.status().is_success() => true,
                    Ok(r) => {
                        tracing::warn!(event, dev_eui, status = %r.status(), "webhook refused the event");
                        false
                    }
                    Err(e) => {
                        tracing::warn!(event, dev_eui, error = %e, "webhook post failed");
                        false
                    }
                }
            }
        };
        let outcome = if delivered { "ok" } else { "failed" };
        metrics::counter!("meter_sim_webhook_posts_total", "event" => event, "outcome" => outcome)
            .increment(1);
        let mut s = self.lock();
        if self.webhook.is_some() {
            s.count(dev_eui, |c| {
                if delivered {
                    c.webhook_posts += 1
                } else {
                    c.webhook_failures += 1
                }
            });
        }
        if s.events.len() == EVENT_LOG_LEN {
            s.events.pop_front();
        }
        s.events.push_back(PostedEvent {
            event: event.to_owned(),
            dev_eui: dev_eui.to_owned(),
            body,
            delivered,
        });
    }
}

/// What a meter does with one downlink, decided under the lock.
enum Plan {
    /// Flushed or deleted before it was sent.
    Gone,
    /// Transmitted; then these events, in order.
    Sent {
        txack: serde_json::Value,
        then: Vec<(&'static str, serde_json::Value)>,
    },
}

/// Answers one enqueued downlink after the configured latency.
async fn deliver(shared: Arc<Shared>, dev_eui: String, item_id: String, outcome: Outcome) {
    let latency = shared.lock().latency;
    tokio::time::sleep(latency).await;
    let plan = plan_delivery(&shared, &dev_eui, &item_id, outcome);
    match plan {
        Plan::Gone => {}
        Plan::Sent { txack, then } => {
            shared.post("txack", &dev_eui, txack).await;
            for (event, body) in then {
                shared.post(event, &dev_eui, body).await;
            }
        }
    }
}

fn plan_delivery(shared: &Shared, dev_eui: &str, item_id: &str, outcome: Outcome) -> Plan {
    let now = Utc::now();
    let mut guard = shared.lock();
    let s = &mut *guard;
    let Some(device) = s.devices.get_mut(dev_eui) else {
        return Plan::Gone;
    };
    let Some(at) = device.queue.iter().position(|i| i.id == item_id) else {
        return Plan::Gone;
    };
    let item = device.queue.remove(at);
    device.f_cnt_down += 1;
    let f_cnt_down = device.f_cnt_down;
    let downlink_id: u32 = s.rng.random();
    let txack = events::txack(
        &device.meta,
        &shared.radio,
        item_id,
        downlink_id,
        f_cnt_down,
        now,
    );
    let ack_up_order_swapped: bool = s.rng.random();
    let dedup = uuid::Uuid::new_v4().to_string();

    let request = calin::decode_request(&item.data).ok().and_then(|r| {
        let address = device.address?;
        // The DLMS power-limit read carries no address: whoever receives it answers.
        (r.address.is_none() || r.address == Some(address)).then_some((r.command, address))
    });
    let Some((command, address)) = request else {
        tracing::info!(
            dev_eui,
            "the meter ignored a frame it cannot decode or not addressed to it"
        );
        s.count(dev_eui, |c| {
            c.txacks_sent += 1;
            c.ignored += 1;
        });
        return Plan::Sent {
            txack,
            then: vec![],
        };
    };
    let mut then = Vec::new();
    let reply = match outcome {
        Outcome::Loss => None,
        Outcome::AckFalse => {
            then.push((
                "ack",
                events::ack(&device.meta, item_id, &dedup, false, f_cnt_down, now),
            ));
            None
        }
        Outcome::Nak => Some(meter::refuse(&command)),
        Outcome::Ghost => {
            device.meter.execute(&command, now);
            None
        }
        Outcome::Delivered => Some(device.meter.execute(&command, now)),
    };
    if let Some(response) = reply {
        let data = calin::encode_response(address, &response);
        device.f_cnt_up += 1;
        let ack = (
            "ack",
            events::ack(&device.meta, item_id, &dedup, true, f_cnt_down, now),
        );
        let up = (
            "up",
            events::up(
                &device.meta,
                &shared.radio,
                &dedup,
                device.f_cnt_up,
                data,
                now,
            ),
        );
        if ack_up_order_swapped {
            then.extend([up, ack]);
        } else {
            then.extend([ack, up]);
        }
    }
    s.count(dev_eui, |c| {
        c.txacks_sent += 1;
        match outcome {
            Outcome::Delivered => {
                c.executed += 1;
                c.acks_sent += 1;
                c.replies_sent += 1;
            }
            Outcome::Nak => {
                c.refused += 1;
                c.acks_sent += 1;
                c.replies_sent += 1;
            }
            Outcome::Ghost => {
                c.executed += 1;
                c.ghosted += 1;
            }
            Outcome::AckFalse => {
                c.not_acknowledged += 1;
                c.acks_sent += 1;
            }
            Outcome::Loss => c.lost += 1,
        }
    });
    Plan::Sent { txack, then }
}

/// Sends every meter's hourly report, consuming energy for the interval first.
async fn report_loop(shared: Arc<Shared>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let now = Utc::now();
        let reports: Vec<(String, serde_json::Value)> = {
            let mut guard = shared.lock();
            let s = &mut *guard;
            let mut out = Vec::new();
            for (eui, device) in s.devices.iter_mut() {
                device.meter.consume(every);
                let (Some(address), Some(report)) =
                    (device.address, device.meter.hourly_report(now))
                else {
                    continue;
                };
                device.f_cnt_up += 1;
                device.counters.reports_sent += 1;
                let data = calin::encode_response(address, &report);
                let dedup = uuid::Uuid::new_v4().to_string();
                out.push((
                    eui.clone(),
                    events::up(
                        &device.meta,
                        &shared.radio,
                        &dedup,
                        device.f_cnt_up,
                        data,
                        now,
                    ),
                ));
            }
            s.totals.reports_sent += out.len() as u64;
            out
        };
        for (eui, body) in reports {
            shared.post("up", &eui, body).await;
        }
    }
}

/// A running simulator. Dropping it stops the gRPC server and the report loop (deliveries
/// already scheduled still finish).
pub struct SimHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    reports: Option<JoinHandle<()>>,
}

/// Lower-case DevEUI, as ChirpStack keys devices.
fn eui(dev_eui: &str) -> String {
    dev_eui.trim().to_ascii_lowercase()
}

impl SimHandle {
    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The gRPC endpoint URL (`http://127.0.0.1:port`), as tiamat's ChirpStack adapter takes it.
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn counters(&self) -> Counters {
        self.shared.lock().totals
    }

    pub fn counters_for(&self, dev_eui: &str) -> Option<Counters> {
        self.shared
            .lock()
            .devices
            .get(&eui(dev_eui))
            .map(|d| d.counters)
    }

    /// The registered DevEUIs.
    pub fn devices(&self) -> Vec<String> {
        self.shared.lock().devices.keys().cloned().collect()
    }

    pub fn meter(&self, dev_eui: &str) -> Option<MeterState> {
        self.shared
            .lock()
            .devices
            .get(&eui(dev_eui))
            .map(|d| d.meter.state.clone())
    }

    /// Sets a meter's state, registering the device if it is unknown.
    pub fn set_meter(&self, dev_eui: &str, state: MeterState) {
        let key = eui(dev_eui);
        let mut s = self.shared.lock();
        s.devices
            .entry(key.clone())
            .or_insert_with(|| Device::auto(&key))
            .meter
            .state = state;
    }

    /// Changes a known meter's state in place; false when the device is unknown.
    pub fn update_meter(&self, dev_eui: &str, change: impl FnOnce(&mut MeterState)) -> bool {
        match self.shared.lock().devices.get_mut(&eui(dev_eui)) {
            Some(d) => {
                change(&mut d.meter.state);
                true
            }
            None => false,
        }
    }

    /// Tells a meter what `token` (20 digits) will do when it is accepted (the simulator
    /// cannot decrypt STS). Registers the device if it is unknown.
    pub fn prime_token(
        &self,
        dev_eui: &str,
        token: &str,
        effect: TokenEffect,
    ) -> anyhow::Result<()> {
        let token = StsToken::new(token).context("a token is 20 digits")?;
        let key = eui(dev_eui);
        let mut s = self.shared.lock();
        s.devices
            .entry(key.clone())
            .or_insert_with(|| Device::auto(&key))
            .meter
            .primed
            .insert(token.number(), effect);
        Ok(())
    }

    /// Items waiting in a device's queue.
    pub fn queue_len(&self, dev_eui: &str) -> usize {
        self.shared
            .lock()
            .devices
            .get(&eui(dev_eui))
            .map_or(0, |d| d.queue.len())
    }

    pub fn set_faults(&self, faults: Faults) -> anyhow::Result<()> {
        faults.validate()?;
        self.shared.lock().faults = faults;
        Ok(())
    }

    pub fn set_latency(&self, latency: Duration) {
        self.shared.lock().latency = latency;
    }

    /// Events produced so far (the last 10 000), oldest first.
    pub fn events(&self) -> Vec<PostedEvent> {
        self.shared.lock().events.iter().cloned().collect()
    }

    /// Stops serving and waits for the server to close.
    pub async fn shutdown(mut self) {
        self.stop_all();
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }

    fn stop_all(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(reports) = self.reports.take() {
            reports.abort();
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// Starts the simulator: binds the gRPC listener, then serves in the background.
pub async fn start(config: SimConfig) -> anyhow::Result<SimHandle> {
    config.faults.validate()?;
    let listener = tokio::net::TcpListener::bind(config.grpc_listen)
        .await
        .with_context(|| format!("binding the gRPC listener on {}", config.grpc_listen))?;
    let addr = listener
        .local_addr()
        .context("the gRPC listener's address")?;
    let rng = match config.seed {
        Some(seed) => StdRng::seed_from_u64(seed),
        None => StdRng::from_os_rng(),
    };
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        // ChirpStack's own HTTP integration gives up after 5 s.
        .timeout(Duration::from_secs(5))
        .build()
        .context("building the webhook HTTP client")?;
    let shared = Arc::new(Shared {
        state: Mutex::new(SimState {
            devices: BTreeMap::new(),
            rng,
            faults: config.faults,
            latency: config.latency,
            totals: Counters::default(),
            events: VecDeque::new(),
        }),
        http,
        webhook: config.webhook.clone(),
        auto_register: config.auto_register,
        api_token: config.api_token.clone(),
        radio: Radio {
            gateway_id: config.gateway_id.to_ascii_lowercase(),
            rssi: -87,
            snr: 7.5,
        },
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let service = DeviceServiceServer::new(service::SimDeviceService::new(shared.clone()));
    let server = tokio::spawn(async move {
        let served = Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
                let _ = stopped.await;
            })
            .await;
        if let Err(e) = served {
            metrics::counter!("meter_sim_server_errors_total").increment(1);
            tracing::error!(error = %e, "the simulated ChirpStack gRPC server stopped");
        }
    });
    let reports = config
        .report_interval
        .filter(|d| !d.is_zero())
        .map(|every| tokio::spawn(report_loop(shared.clone(), every)));
    tracing::info!(%addr, webhook = ?config.webhook.as_ref().map(|w| w.url.as_str()), "meter-sim serving ChirpStack's DeviceService");
    Ok(SimHandle {
        addr,
        shared,
        stop: Some(stop),
        server: Some(server),
        reports,
    })
}

/// What the gRPC service needs from the shared state.
impl Shared {
    pub(crate) fn check_token(&self, header: Option<&str>) -> bool {
        match &self.api_token {
            None => true,
            Some(t) => header
                .and_then(|h| h.strip_prefix("Bearer "))
                .is_some_and(|given| given == t),
        }
    }

    pub(crate) fn create(&self, meta: DeviceMeta) -> bool {
        let mut s = self.lock();
        if s.devices.contains_key(&meta.dev_eui) {
            return false;
        }
        s.devices.insert(meta.dev_eui.clone(), Device::new(meta));
        true
    }

    pub(crate) fn device(&self, dev_eui: &str) -> Option<(DeviceMeta, DateTime<Utc>)> {
        self.lock()
            .devices
            .get(dev_eui)
            .map(|d| (d.meta.clone(), d.created_at))
    }

    pub(crate) fn delete(&self, dev_eui: &str) -> bool {
        self.lock().devices.remove(dev_eui).is_some()
    }

    /// `None`: unknown device; `Some(false)`: keys exist.
    pub(crate) fn create_keys(&self, dev_eui: &str, nwk_key: String) -> Option<bool> {
        let mut s = self.lock();
        let d = s.devices.get_mut(dev_eui)?;
        if d.nwk_key.is_some() {
            return Some(false);
        }
        d.nwk_key = Some(nwk_key);
        Some(true)
    }

    pub(crate) fn keys(&self, dev_eui: &str) -> Option<Option<String>> {
        self.lock().devices.get(dev_eui).map(|d| d.nwk_key.clone())
    }

    pub(crate) fn queue(&self, dev_eui: &str) -> Option<Vec<api::DeviceQueueItem>> {
        self.lock().devices.get(dev_eui).map(|d| d.queue.clone())
    }

    pub(crate) fn flush(&self, dev_eui: &str) -> bool {
        let mut s = self.lock();
        let Some(d) = s.devices.get_mut(dev_eui) else {
            return false;
        };
        let n = d.queue.len() as u64;
        d.queue.clear();
        s.count(dev_eui, |c| c.flushed += n);
        true
    }

    /// Queues `item` and schedules its delivery; `None` when the device is unknown.
    pub(crate) fn enqueue(
        self: &Arc<Self>,
        mut item: api::DeviceQueueItem,
        flush_first: bool,
    ) -> Option<String> {
        let dev_eui = item.dev_eui.clone();
        let id = uuid::Uuid::new_v4().to_string();
        let outcome = {
            let mut guard = self.lock();
            let s = &mut *guard;
            if !s.devices.contains_key(&dev_eui) {
                if !self.auto_register {
                    return None;
                }
                s.devices.insert(dev_eui.clone(), Device::auto(&dev_eui));
            }
            let roll: f64 = s.rng.random();
            let outcome = s.faults.draw(roll);
            let device = s.devices.get_mut(&dev_eui)?;
            if flush_first {
                device.queue.clear();
            }
            item.id = id.clone();
            item.is_pending = false;
            device.queue.push(item);
            s.count(&dev_eui, |c| c.downlinks_received += 1);
            outcome
        };
        tokio::spawn(deliver(self.clone(), dev_eui, id.clone(), outcome));
        Some(id)
    }
}
