//! ChirpStack v4 gRPC device API: the [`meters::DownlinkQueue`] and [`meters::DeviceRegistry`]
//! adapters.
//!
//! One lazily connected channel (the first call connects; a dead server is a transient error at
//! call time, not a start-up failure), the API token as `authorization: Bearer …` on every call,
//! and a per-request deadline kept below the delivery lease so that a hung call ends before
//! another worker may take the same delivery.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use chirpstack_api::api;
use chirpstack_api::api::device_service_client::DeviceServiceClient;
use chirpstack_api::tonic::metadata::{Ascii, MetadataValue};
use chirpstack_api::tonic::service::Interceptor;
use chirpstack_api::tonic::service::interceptor::InterceptedService;
use chirpstack_api::tonic::transport::{Channel, Endpoint};
use chirpstack_api::tonic::{Code, Request, Status};
use meters::{DeviceRegistration, Downlink, NetworkError, Registered};
use secrecy::{ExposeSecret, SecretString};

/// Default per-request deadline. The delivery lease is 20 s; a call must end well before it.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// ChirpStack answers an enqueue for an unknown device with this foreign-key violation.
const UNKNOWN_DEVICE_MARKER: &str = "device_queue_item_dev_eui_fkey";

/// Where the ChirpStack API is and how tiamat registers its meters there.
#[derive(Clone)]
pub struct ChirpstackSettings {
    /// gRPC endpoint, e.g. `http://chirpstack:8080`.
    pub url: String,
    /// An API key (tenant or admin) from ChirpStack's console.
    pub api_token: SecretString,
    /// The application meters are registered in (UUID).
    pub application_id: String,
    /// The device profile meters are registered with (UUID).
    pub device_profile_id: String,
    /// The LoRaWAN 1.0.x root key (AppKey, 32 hex digits) every meter shares.
    pub app_key: SecretString,
    pub timeout: Duration,
}

impl fmt::Debug for ChirpstackSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChirpstackSettings")
            .field("url", &self.url)
            .field("application_id", &self.application_id)
            .field("device_profile_id", &self.device_profile_id)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("the ChirpStack API URL {0:?} is not a valid http(s) URI")]
    Url(String),
    #[error("the ChirpStack API token cannot be sent as a header (it must be printable ASCII)")]
    Token,
    #[error("the ChirpStack app key must be 32 hexadecimal digits")]
    AppKey,
    #[error("the ChirpStack request timeout must be between 1 ms and 20 s")]
    Timeout,
}

/// Whether `key` is a 128-bit key in hex (what ChirpStack accepts as `nwk_key`).
pub fn is_valid_app_key(key: &str) -> bool {
    key.len() == 32 && key.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Adds the bearer token to every request.
#[derive(Clone)]
struct BearerToken(MetadataValue<Ascii>);

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

type Client = DeviceServiceClient<InterceptedService<Channel, BearerToken>>;

/// The ChirpStack device API (DeviceService over gRPC).
#[derive(Clone)]
pub struct ChirpstackDeviceApi {
    client: Client,
    url: String,
    application_id: String,
    device_profile_id: String,
    app_key: SecretString,
}

impl fmt::Debug for ChirpstackDeviceApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChirpstackDeviceApi")
            .field("url", &self.url)
            .field("application_id", &self.application_id)
            .field("device_profile_id", &self.device_profile_id)
            .finish_non_exhaustive()
    }
}

impl ChirpstackDeviceApi {
    /// Builds the client without connecting. Must be called inside a Tokio runtime (the lazy
    /// channel spawns its worker there).
    pub fn new(settings: ChirpstackSettings) -> Result<Self, SettingsError> {
        if settings.timeout.is_zero() || settings.timeout > Duration::from_secs(20) {
            return Err(SettingsError::Timeout);
        }
        if !is_valid_app_key(settings.app_key.expose_secret()) {
            return Err(SettingsError::AppKey);
        }
        let mut token: MetadataValue<Ascii> =
            format!("Bearer {}", settings.api_token.expose_secret())
                .parse()
                .map_err(|_| SettingsError::Token)?;
        token.set_sensitive(true);
        let url = settings.url.trim_end_matches('/').to_owned();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(SettingsError::Url(url));
        }
        let endpoint = Endpoint::from_shared(url.clone())
            .map_err(|_| SettingsError::Url(url.clone()))?
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(5)));
        let channel = endpoint.connect_lazy();
        Ok(Self {
            client: DeviceServiceClient::with_interceptor(channel, BearerToken(token)),
            url,
            application_id: settings.application_id,
            device_profile_id: settings.device_profile_id,
            app_key: settings.app_key,
        })
    }

    fn client(&self) -> Client {
        // Clones share the channel; tonic clients need `&mut self` per call.
        self.client.clone()
    }

    /// Creates the device's keys if it has none. A device left without keys by an earlier,
    /// interrupted registration is repaired; existing keys are never replaced.
    async fn ensure_keys(&self, dev_eui: &str) -> Result<(), NetworkError> {
        let found = self
            .client()
            .get_keys(api::GetDeviceKeysRequest {
                dev_eui: dev_eui.to_owned(),
            })
            .await;
        match found {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::NotFound => self.create_keys(dev_eui).await,
            Err(s) => Err(network_error(&s)),
        }
    }

    async fn create_keys(&self, dev_eui: &str) -> Result<(), NetworkError> {
        let created = self
            .client()
            .create_keys(api::CreateDeviceKeysRequest {
                device_keys: Some(api::DeviceKeys {
                    dev_eui: dev_eui.to_owned(),
                    nwk_key: self.app_key.expose_secret().to_owned(),
                    ..Default::default()
                }),
            })
            .await;
        match created {
            Ok(_) => Ok(()),
            // Created concurrently by another registration: the keys are there.
            Err(s) if s.code() == Code::AlreadyExists => Ok(()),
            Err(s) => Err(network_error(&s)),
        }
    }
}

/// Maps a gRPC status to a network error: what may pass with time is transient, the rest
/// permanent with the status name as its code.
pub fn network_error(status: &Status) -> NetworkError {
    let code = status.code();
    let message = status.message();
    if message.contains(UNKNOWN_DEVICE_MARKER) {
        return NetworkError::Permanent {
            reason: format!("the device is not registered with ChirpStack ({message})"),
            code: Some(format!("{code:?}")),
        };
    }
    match code {
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::ResourceExhausted
        | Code::Aborted
        | Code::Internal
        | Code::Unknown
        | Code::Cancelled => NetworkError::Transient(format!("ChirpStack {code:?}: {message}")),
        Code::Ok
        | Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::PermissionDenied
        | Code::FailedPrecondition
        | Code::OutOfRange
        | Code::Unimplemented
        | Code::DataLoss
        | Code::Unauthenticated => NetworkError::Permanent {
            reason: if message.is_empty() {
                code.description().to_owned()
            } else {
                message.to_owned()
            },
            code: Some(format!("{code:?}")),
        },
    }
}

fn count_error(operation: &'static str, e: &NetworkError) {
    let kind = if e.is_retryable() {
        "transient"
    } else {
        "permanent"
    };
    metrics::counter!("tiamat_chirpstack_api_errors_total", "operation" => operation, "kind" => kind)
        .increment(1);
}

#[async_trait]
impl meters::DownlinkQueue for ChirpstackDeviceApi {
    async fn enqueue(&self, downlink: Downlink) -> Result<String, NetworkError> {
        let request = api::EnqueueDeviceQueueItemRequest {
            queue_item: Some(api::DeviceQueueItem {
                dev_eui: downlink.dev_eui,
                confirmed: downlink.confirmed,
                f_port: downlink.f_port,
                data: downlink.data,
                ..Default::default()
            }),
            flush_queue: false,
        };
        match self.client().enqueue(request).await {
            Ok(answer) => Ok(answer.into_inner().id),
            Err(s) => {
                let e = network_error(&s);
                count_error("enqueue", &e);
                Err(e)
            }
        }
    }
}

#[async_trait]
impl meters::DeviceRegistry for ChirpstackDeviceApi {
    async fn register(&self, device: DeviceRegistration) -> Result<Registered, NetworkError> {
        let request = api::CreateDeviceRequest {
            device: Some(api::Device {
                dev_eui: device.dev_eui.clone(),
                name: device.name,
                description: device.description,
                application_id: self.application_id.clone(),
                device_profile_id: self.device_profile_id.clone(),
                ..Default::default()
            }),
        };
        let result = match self.client().create(request).await {
            Ok(_) => self
                .create_keys(&device.dev_eui)
                .await
                .map(|()| Registered::Created),
            Err(s) if s.code() == Code::AlreadyExists => self
                .ensure_keys(&device.dev_eui)
                .await
                .map(|()| Registered::AlreadyExisted),
            Err(s) => Err(network_error(&s)),
        };
        if let Err(e) = &result {
            count_error("register", e);
        }
        result
    }

    async fn remove(&self, dev_eui: &str) -> Result<(), NetworkError> {
        let request = api::DeleteDeviceRequest {
            dev_eui: dev_eui.to_owned(),
        };
        match self.client().delete(request).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::NotFound => Ok(()),
            Err(s) => {
                let e = network_error(&s);
                count_error("remove", &e);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};

    use chirpstack_api::api::device_service_server::{DeviceService, DeviceServiceServer};
    use chirpstack_api::tonic::transport::Server;
    use chirpstack_api::tonic::transport::server::TcpIncoming;
    use chirpstack_api::tonic::{self, Response};
    use meters::{DeviceRegistry, DownlinkQueue};

    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    enum Call {
        Create(api::Device),
        CreateKeys(api::DeviceKeys),
        GetKeys(String),
        Delete(String),
        Enqueue(api::DeviceQueueItem),
    }

    /// A DeviceService that records every call (with its `authorization` header), keeps devices
    /// and keys like ChirpStack, and fails a method once when told to.
    #[derive(Default)]
    struct FakeChirpstack {
        calls: Mutex<Vec<(Call, Option<String>)>>,
        devices: Mutex<HashSet<String>>,
        keys: Mutex<HashSet<String>>,
        fail_next: Mutex<HashMap<&'static str, Status>>,
    }

    impl FakeChirpstack {
        fn record<T>(
            &self,
            method: &'static str,
            request: &Request<T>,
            call: Call,
        ) -> Result<(), Status> {
            let auth = request
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            self.calls.lock().unwrap().push((call, auth));
            match self.fail_next.lock().unwrap().remove(method) {
                Some(status) => Err(status),
                None => Ok(()),
            }
        }
    }

    fn unimplemented<T>() -> Result<Response<T>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    #[tonic::async_trait]
    impl DeviceService for FakeChirpstack {
        async fn create(
            &self,
            r: Request<api::CreateDeviceRequest>,
        ) -> Result<Response<()>, Status> {
            let device = r.get_ref().device.clone().unwrap_or_default();
            self.record("create", &r, Call::Create(device.clone()))?;
            if !self.devices.lock().unwrap().insert(device.dev_eui) {
                return Err(Status::already_exists("object already exists"));
            }
            Ok(Response::new(()))
        }
        async fn get(
            &self,
            _: Request<api::GetDeviceRequest>,
        ) -> Result<Response<api::GetDeviceResponse>, Status> {
            unimplemented()
        }
        async fn update(
            &self,
            _: Request<api::UpdateDeviceRequest>,
        ) -> Result<Response<()>, Status> {
            unimplemented()
        }
        async fn delete(
            &self,
            r: Request<api::DeleteDeviceRequest>,
        ) -> Result<Response<()>, Status> {
            let eui = r.get_ref().dev_eui.clone();
            self.record("delete", &r, Call::Delete(eui.clone()))?;
            if !self.devices.lock().unwrap().remove(&eui) {
                return Err(Status::not_found("object does not exist"));
            }
            Ok(Response::new(()))
        }
        async fn list(
            &self,
            _: Request<api::ListDevicesRequest>,
        ) -> Result<Response<api::ListDevicesResponse>, Status> {
            unimplemented()
        }
        async fn create_keys(
            &self,
            r: Request<api::CreateDeviceKeysRequest>,
        ) -> Result<Response<()>, Status> {
            let keys = r.get_ref().device_keys.clone().unwrap_or_default();
            self.record("create_keys", &r, Call::CreateKeys(keys.clone()))?;
            if !self.keys.lock().unwrap().insert(keys.dev_eui) {
                return Err(Status::already_exists("object already exists"));
            }
            Ok(Response::new(()))
        }
        async fn get_keys(
            &self,
            r: Request<api::GetDeviceKeysRequest>,
        ) -> Result<Response<api::GetDeviceKeysResponse>, Status> {
            let eui = r.get_ref().dev_eui.clone();
            self.record("get_keys", &r, Call::GetKeys(eui.clone()))?;
            if !self.keys.lock().unwrap().contains(&eui) {
                return Err(Status::not_found("object does not exist"));
            }
            Ok(Response::new(api::GetDeviceKeysResponse::default()))
        }
        async fn update_keys(
            &self,
            _: Request<api::UpdateDeviceKeysRequest>,
        ) -> Result<Response<()>, Status> {
            unimplemented()
        }
        async fn delete_keys(
            &self,
            _: Request<api::DeleteDeviceKeysRequest>,
        ) -> Result<Response<()>, Status> {
            unimplemented()
        }
        async fn flush_dev_nonces(
            &self,
            _: Request<api::FlushDevNoncesRequest>,
        ) -> Result<Response<()>, Status> {
            unimplemented()
        }
        async fn activate(
            &self,
            _: Request<api::ActivateDeviceRequest>,
        ) -> Result<Response<()>, Status> {
            unimplemented()
        }
        async fn deactivate(
            &self,
            _: Request<api::DeactivateDeviceRequest>,
        ) -> Result<Response<()>, Status> {
            unimplemented()
        }
        async fn get_activation(
            &self,
            _: Request<api::GetDeviceActivationRequest>,
        ) -> Result<Response<api::GetDeviceActivationResponse>, Status> {
            unimplemented()
        }
        async fn get_random_dev_addr(
            &self,
            _: Request<api::GetRandomDevAddrRequest>,
        ) -> Result<Response<api::GetRandomDevAddrResponse>, Status> {
            unimplemented()
        }
        async fn get_metrics(
            &self,
            _: Request<api::GetDeviceMetricsRequest>,
        ) -> Result<Response<api::GetDeviceMetricsResponse>, Status> {
            unimplemented()
        }
        async fn get_link_metrics(
            &self,
            _: Request<api::GetDeviceLinkMetricsRequest>,
        ) -> Result<Response<api::GetDeviceLinkMetricsResponse>, Status> {
            unimplemented()
        }
        async fn enqueue(
            &self,
            r: Request<api::EnqueueDeviceQueueItemRequest>,
        ) -> Result<Response<api::EnqueueDeviceQueueItemResponse>, Status> {
            let item = r.get_ref().queue_item.clone().unwrap_or_default();
            self.record("enqueue", &r, Call::Enqueue(item))?;
            Ok(Response::new(api::EnqueueDeviceQueueItemResponse {
                id: "5f0c4d0e-0000-4000-8000-000000000001".into(),
            }))
        }
        async fn flush_queue(
            &self,
            _: Request<api::FlushDeviceQueueRequest>,
        ) -> Result<Response<()>, Status> {
            unimplemented()
        }
        async fn get_queue(
            &self,
            _: Request<api::GetDeviceQueueItemsRequest>,
        ) -> Result<Response<api::GetDeviceQueueItemsResponse>, Status> {
            unimplemented()
        }
        async fn get_next_f_cnt_down(
            &self,
            _: Request<api::GetDeviceNextFCntDownRequest>,
        ) -> Result<Response<api::GetDeviceNextFCntDownResponse>, Status> {
            unimplemented()
        }
    }

    const APP_KEY: &str = "00112233445566778899aabbccddeeff";

    fn settings(addr: SocketAddr) -> ChirpstackSettings {
        ChirpstackSettings {
            url: format!("http://{addr}"),
            api_token: SecretString::from("api-token-123"),
            application_id: "app-1".into(),
            device_profile_id: "profile-1".into(),
            app_key: SecretString::from(APP_KEY),
            timeout: Duration::from_secs(5),
        }
    }

    async fn serve() -> (Arc<FakeChirpstack>, ChirpstackDeviceApi) {
        let fake = Arc::new(FakeChirpstack::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = DeviceServiceServer::from_arc(fake.clone());
        tokio::spawn(
            Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpIncoming::from(listener)),
        );
        let api = ChirpstackDeviceApi::new(settings(addr)).unwrap();
        (fake, api)
    }

    fn calls(fake: &FakeChirpstack) -> Vec<Call> {
        fake.calls
            .lock()
            .unwrap()
            .iter()
            .map(|(c, _)| c.clone())
            .collect()
    }

    fn downlink() -> Downlink {
        Downlink {
            dev_eui: "0000047003333623".into(),
            f_port: 1,
            confirmed: true,
            data: vec![0x68, 0x01, 0x16],
        }
    }

    #[tokio::test]
    async fn enqueue_sends_the_item_with_the_bearer_token_and_answers_its_id() {
        let (fake, api) = serve().await;
        let id = api.enqueue(downlink()).await.unwrap();
        assert_eq!(id, "5f0c4d0e-0000-4000-8000-000000000001");
        let recorded = fake.calls.lock().unwrap().clone();
        assert_eq!(recorded.len(), 1);
        let (call, auth) = &recorded[0];
        assert_eq!(auth.as_deref(), Some("Bearer api-token-123"));
        let Call::Enqueue(item) = call else {
            panic!("{call:?}")
        };
        assert_eq!(item.dev_eui, "0000047003333623");
        assert_eq!(item.f_port, 1);
        assert!(item.confirmed);
        assert_eq!(item.data, [0x68, 0x01, 0x16]);
    }

    #[tokio::test]
    async fn enqueue_errors_are_transient_or_permanent_by_status() {
        let (fake, api) = serve().await;
        let cases = [
            (Status::unavailable("down"), true),
            (Status::deadline_exceeded("slow"), true),
            (Status::resource_exhausted("rate"), true),
            (Status::internal("db"), true),
            (Status::invalid_argument("fPort must be > 0"), false),
            (Status::unauthenticated("bad token"), false),
            (Status::not_found("no device"), false),
            (
                Status::internal(
                    "insert or update on table \"device_queue_item\" violates foreign key constraint \"device_queue_item_dev_eui_fkey\"",
                ),
                false,
            ),
        ];
        for (status, transient) in cases {
            let code = format!("{:?}", status.code());
            fake.fail_next.lock().unwrap().insert("enqueue", status);
            let err = api.enqueue(downlink()).await.unwrap_err();
            assert_eq!(err.is_retryable(), transient, "{err:?}");
            if let NetworkError::Permanent { code: c, .. } = &err {
                assert_eq!(c.as_deref(), Some(code.as_str()));
            }
        }
        let err = api.enqueue(downlink()).await;
        assert!(err.is_ok(), "a one-shot failure must not stick: {err:?}");
    }

    #[tokio::test]
    async fn the_unknown_device_foreign_key_is_named() {
        let (fake, api) = serve().await;
        fake.fail_next.lock().unwrap().insert(
            "enqueue",
            Status::internal("violates foreign key constraint \"device_queue_item_dev_eui_fkey\""),
        );
        match api.enqueue(downlink()).await {
            Err(NetworkError::Permanent { reason, .. }) => {
                assert!(reason.contains("not registered"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn register_creates_the_device_and_its_keys_then_is_idempotent() {
        let (fake, api) = serve().await;
        let device = DeviceRegistration {
            dev_eui: "0000047003333623".into(),
            name: "47003333623".into(),
            description: "CALIN meter".into(),
        };
        assert_eq!(
            api.register(device.clone()).await.unwrap(),
            Registered::Created
        );
        assert_eq!(
            calls(&fake),
            [
                Call::Create(api::Device {
                    dev_eui: "0000047003333623".into(),
                    name: "47003333623".into(),
                    description: "CALIN meter".into(),
                    application_id: "app-1".into(),
                    device_profile_id: "profile-1".into(),
                    ..Default::default()
                }),
                Call::CreateKeys(api::DeviceKeys {
                    dev_eui: "0000047003333623".into(),
                    nwk_key: APP_KEY.into(),
                    ..Default::default()
                }),
            ]
        );
        fake.calls.lock().unwrap().clear();
        // Re-install: the device and its keys are left alone.
        assert_eq!(
            api.register(device).await.unwrap(),
            Registered::AlreadyExisted
        );
        let again = calls(&fake);
        assert!(
            !again.iter().any(|c| matches!(c, Call::CreateKeys(_))),
            "{again:?}"
        );
    }

    #[tokio::test]
    async fn a_device_left_without_keys_gets_them_on_the_next_registration() {
        let (fake, api) = serve().await;
        let device = DeviceRegistration {
            dev_eui: "0000047003333624".into(),
            name: "47003333624".into(),
            description: String::new(),
        };
        fake.fail_next
            .lock()
            .unwrap()
            .insert("create_keys", Status::unavailable("blip"));
        assert!(
            api.register(device.clone())
                .await
                .unwrap_err()
                .is_retryable()
        );
        assert_eq!(
            api.register(device).await.unwrap(),
            Registered::AlreadyExisted
        );
        assert!(fake.keys.lock().unwrap().contains("0000047003333624"));
    }

    #[tokio::test]
    async fn remove_deletes_and_an_unknown_device_is_fine() {
        let (fake, api) = serve().await;
        fake.devices
            .lock()
            .unwrap()
            .insert("0000047003333623".into());
        api.remove("0000047003333623").await.unwrap();
        api.remove("0000047003333623").await.unwrap();
        assert_eq!(
            calls(&fake),
            [
                Call::Delete("0000047003333623".into()),
                Call::Delete("0000047003333623".into())
            ]
        );
        fake.fail_next
            .lock()
            .unwrap()
            .insert("delete", Status::permission_denied("no"));
        assert!(!api.remove("x").await.unwrap_err().is_retryable());
    }

    #[tokio::test]
    async fn a_dead_endpoint_is_transient() {
        // A port that was just free: nothing listens there.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let api = ChirpstackDeviceApi::new(settings(addr)).unwrap();
        let err = api.enqueue(downlink()).await.unwrap_err();
        assert!(err.is_retryable(), "{err:?}");
    }

    #[tokio::test]
    async fn bad_settings_are_refused_and_secrets_stay_out_of_debug() {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut s = settings(addr);
        s.app_key = SecretString::from("not-hex");
        assert!(matches!(
            ChirpstackDeviceApi::new(s),
            Err(SettingsError::AppKey)
        ));
        let mut s = settings(addr);
        s.timeout = Duration::from_secs(30);
        assert!(matches!(
            ChirpstackDeviceApi::new(s),
            Err(SettingsError::Timeout)
        ));
        let mut s = settings(addr);
        s.url = "chirpstack:8080".into();
        assert!(matches!(
            ChirpstackDeviceApi::new(s),
            Err(SettingsError::Url(_))
        ));
        let api = ChirpstackDeviceApi::new(settings(addr)).unwrap();
        let dbg = format!("{api:?} {:?}", settings(addr));
        assert!(
            !dbg.contains("api-token-123") && !dbg.contains(APP_KEY),
            "{dbg}"
        );
    }
}
