//! ChirpStack's `DeviceService`, as much of it as tiamat uses: devices, keys and the queue.
//! Errors carry the codes and messages ChirpStack gives, so the adapter maps them the same way.

use std::sync::Arc;

use chirpstack_api::api;
use chirpstack_api::api::device_service_server::DeviceService;
use chirpstack_api::prost_types::Timestamp;
use chirpstack_api::tonic::{self, Request, Response, Status};

use crate::Shared;
use crate::events::DeviceMeta;

/// What ChirpStack answers when a downlink is enqueued for a device it does not know: the
/// foreign key of its queue table.
const UNKNOWN_DEVICE: &str = "insert or update on table \"device_queue_item\" violates foreign key constraint \"device_queue_item_dev_eui_fkey\"";

pub(crate) struct SimDeviceService {
    shared: Arc<Shared>,
}

impl SimDeviceService {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    fn authorize<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if self.shared.check_token(header) {
            Ok(())
        } else {
            Err(Status::unauthenticated(
                "authorization must be 'Bearer <TOKEN>' with a valid token",
            ))
        }
    }
}

/// A DevEUI as ChirpStack stores it: 16 hex digits, lower case.
fn dev_eui(raw: &str) -> Result<String, Status> {
    let e = raw.trim().to_ascii_lowercase();
    if e.len() == 16 && e.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(e)
    } else {
        Err(Status::invalid_argument(format!("invalid DevEUI {raw:?}")))
    }
}

fn not_found() -> Status {
    Status::not_found("Object does not exist")
}

fn unimplemented<T>(method: &str) -> Result<Response<T>, Status> {
    Err(Status::unimplemented(format!(
        "meter-sim does not simulate DeviceService.{method}"
    )))
}

#[tonic::async_trait]
impl DeviceService for SimDeviceService {
    async fn create(&self, r: Request<api::CreateDeviceRequest>) -> Result<Response<()>, Status> {
        self.authorize(&r)?;
        let device = r
            .into_inner()
            .device
            .ok_or_else(|| Status::invalid_argument("device is missing"))?;
        let meta = DeviceMeta {
            dev_eui: dev_eui(&device.dev_eui)?,
            name: device.name,
            application_id: device.application_id,
            device_profile_id: device.device_profile_id,
        };
        if self.shared.create(meta) {
            Ok(Response::new(()))
        } else {
            Err(Status::already_exists("Object already exists"))
        }
    }

    async fn get(
        &self,
        r: Request<api::GetDeviceRequest>,
    ) -> Result<Response<api::GetDeviceResponse>, Status> {
        self.authorize(&r)?;
        let eui = dev_eui(&r.get_ref().dev_eui)?;
        let (meta, created_at) = self.shared.device(&eui).ok_or_else(not_found)?;
        let created = Some(Timestamp {
            seconds: created_at.timestamp(),
            nanos: 0,
        });
        Ok(Response::new(api::GetDeviceResponse {
            device: Some(api::Device {
                dev_eui: meta.dev_eui,
                name: meta.name,
                application_id: meta.application_id,
                device_profile_id: meta.device_profile_id,
                ..Default::default()
            }),
            created_at: created,
            updated_at: created,
            ..Default::default()
        }))
    }

    async fn update(&self, _: Request<api::UpdateDeviceRequest>) -> Result<Response<()>, Status> {
        unimplemented("Update")
    }

    async fn delete(&self, r: Request<api::DeleteDeviceRequest>) -> Result<Response<()>, Status> {
        self.authorize(&r)?;
        let eui = dev_eui(&r.get_ref().dev_eui)?;
        if self.shared.delete(&eui) {
            Ok(Response::new(()))
        } else {
            Err(not_found())
        }
    }

    async fn list(
        &self,
        _: Request<api::ListDevicesRequest>,
    ) -> Result<Response<api::ListDevicesResponse>, Status> {
        unimplemented("List")
    }

    async fn create_keys(
        &self,
        r: Request<api::CreateDeviceKeysRequest>,
    ) -> Result<Response<()>, Status> {
        self.authorize(&r)?;
        let keys = r
            .into_inner()
            .device_keys
            .ok_or_else(|| Status::invalid_argument("device_keys is missing"))?;
        let eui = dev_eui(&keys.dev_eui)?;
        if !(keys.nwk_key.len() == 32 && keys.nwk_key.bytes().all(|b| b.is_ascii_hexdigit())) {
            return Err(Status::invalid_argument("nwk_key must be 32 hex digits"));
        }
        match self.shared.create_keys(&eui, keys.nwk_key) {
            None => Err(not_found()),
            Some(false) => Err(Status::already_exists("Object already exists")),
            Some(true) => Ok(Response::new(())),
        }
    }

    async fn get_keys(
        &self,
        r: Request<api::GetDeviceKeysRequest>,
    ) -> Result<Response<api::GetDeviceKeysResponse>, Status> {
        self.authorize(&r)?;
        let eui = dev_eui(&r.get_ref().dev_eui)?;
        let key = self.shared.keys(&eui).flatten().ok_or_else(not_found)?;
        Ok(Response::new(api::GetDeviceKeysResponse {
            device_keys: Some(api::DeviceKeys {
                dev_eui: eui,
                nwk_key: key,
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn update_keys(
        &self,
        _: Request<api::UpdateDeviceKeysRequest>,
    ) -> Result<Response<()>, Status> {
        unimplemented("UpdateKeys")
    }

    async fn delete_keys(
        &self,
        _: Request<api::DeleteDeviceKeysRequest>,
    ) -> Result<Response<()>, Status> {
        unimplemented("DeleteKeys")
    }

    async fn flush_dev_nonces(
        &self,
        _: Request<api::FlushDevNoncesRequest>,
    ) -> Result<Response<()>, Status> {
        unimplemented("FlushDevNonces")
    }

    async fn activate(
        &self,
        _: Request<api::ActivateDeviceRequest>,
    ) -> Result<Response<()>, Status> {
        unimplemented("Activate")
    }

    async fn deactivate(
        &self,
        _: Request<api::DeactivateDeviceRequest>,
    ) -> Result<Response<()>, Status> {
        unimplemented("Deactivate")
    }

    async fn get_activation(
        &self,
        _: Request<api::GetDeviceActivationRequest>,
    ) -> Result<Response<api::GetDeviceActivationResponse>, Status> {
        unimplemented("GetActivation")
    }

    async fn get_random_dev_addr(
        &self,
        _: Request<api::GetRandomDevAddrRequest>,
    ) -> Result<Response<api::GetRandomDevAddrResponse>, Status> {
        unimplemented("GetRandomDevAddr")
    }

    async fn get_metrics(
        &self,
        _: Request<api::GetDeviceMetricsRequest>,
    ) -> Result<Response<api::GetDeviceMetricsResponse>, Status> {
        unimplemented("GetMetrics")
    }

    async fn get_link_metrics(
        &self,
        _: Request<api::GetDeviceLinkMetricsRequest>,
    ) -> Result<Response<api::GetDeviceLinkMetricsResponse>, Status> {
        unimplemented("GetLinkMetrics")
    }

    async fn enqueue(
        &self,
        r: Request<api::EnqueueDeviceQueueItemRequest>,
    ) -> Result<Response<api::EnqueueDeviceQueueItemResponse>, Status> {
        self.authorize(&r)?;
        let request = r.into_inner();
        let mut item = request
            .queue_item
            .ok_or_else(|| Status::invalid_argument("queue_item is missing"))?;
        item.dev_eui = dev_eui(&item.dev_eui)?;
        if item.f_port == 0 || item.f_port > 223 {
            return Err(Status::invalid_argument("FPort must be between 1 and 223"));
        }
        match self.shared.enqueue(item, request.flush_queue) {
            Some(id) => Ok(Response::new(api::EnqueueDeviceQueueItemResponse { id })),
            None => Err(Status::not_found(UNKNOWN_DEVICE)),
        }
    }

    async fn flush_queue(
        &self,
        r: Request<api::FlushDeviceQueueRequest>,
    ) -> Result<Response<()>, Status> {
        self.authorize(&r)?;
        let eui = dev_eui(&r.get_ref().dev_eui)?;
        if self.shared.flush(&eui) {
            Ok(Response::new(()))
        } else {
            Err(not_found())
        }
    }

    async fn get_queue(
        &self,
        r: Request<api::GetDeviceQueueItemsRequest>,
    ) -> Result<Response<api::GetDeviceQueueItemsResponse>, Status> {
        self.authorize(&r)?;
        let request = r.into_inner();
        let eui = dev_eui(&request.dev_eui)?;
        let items = self.shared.queue(&eui).ok_or_else(not_found)?;
        Ok(Response::new(api::GetDeviceQueueItemsResponse {
            total_count: u32::try_from(items.len()).unwrap_or(u32::MAX),
            result: if request.count_only {
                Vec::new()
            } else {
                items
            },
        }))
    }

    async fn get_next_f_cnt_down(
        &self,
        _: Request<api::GetDeviceNextFCntDownRequest>,
    ) -> Result<Response<api::GetDeviceNextFCntDownResponse>, Status> {
        unimplemented("GetNextFCntDown")
    }
}
