//! Ports to the network that carries commands to meters: a LoRaWAN network server (ChirpStack)
//! that queues downlinks and knows the devices. Adapters: the `chirpstack` crate (gRPC) and, for
//! tests and demos, `meter-sim`.

use async_trait::async_trait;

/// One downlink for one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downlink {
    /// 16 lowercase hex digits.
    pub dev_eui: String,
    pub f_port: u32,
    /// Confirmed downlinks are acknowledged by the device (the `ack` event).
    pub confirmed: bool,
    pub data: Vec<u8>,
}

/// Why the network server did not take a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    /// Waiting may help: timeouts, unavailable, 5xx, rate limits.
    #[error("network server unavailable: {0}")]
    Transient(String),
    /// It will not work by trying again: unknown device, invalid frame, refused credentials.
    #[error("network server refused: {reason}")]
    Permanent {
        reason: String,
        /// A machine code (gRPC status name, vendor code), when there is one.
        code: Option<String>,
    },
}

impl NetworkError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, NetworkError::Transient(_))
    }
}

/// Queues downlinks on the network server.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait DownlinkQueue: Send + Sync {
    /// Queues `downlink`; answers the network server's queue item id (ChirpStack: a UUID), which
    /// the `txack` and `ack` events carry back.
    async fn enqueue(&self, downlink: Downlink) -> Result<String, NetworkError>;
}

/// A device to register with the network server when a meter is installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRegistration {
    pub dev_eui: String,
    /// Shown in the network server's console (the meter's serial number).
    pub name: String,
    pub description: String,
}

/// What registering found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    Created,
    /// The device was registered before (a re-install): its keys are left as they are.
    AlreadyExisted,
}

/// Registers and removes devices.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait DeviceRegistry: Send + Sync {
    /// Idempotent: registering a known device answers [`Registered::AlreadyExisted`].
    async fn register(&self, device: DeviceRegistration) -> Result<Registered, NetworkError>;
    /// Idempotent: removing an unknown device is not an error.
    async fn remove(&self, dev_eui: &str) -> Result<(), NetworkError>;
}

/// A CALIN LoRaWAN meter's DevEUI: the one it was heard with, or its 11-digit serial number
/// left-padded with zeros to 16 characters (how the fleet is provisioned).
pub fn dev_eui_for(external_reference: &str, heard_as: Option<&str>) -> Option<String> {
    if let Some(e) = heard_as.filter(|e| !e.is_empty()) {
        return Some(e.to_ascii_lowercase());
    }
    let r = external_reference.trim();
    if r.is_empty() || r.len() > 16 || !r.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(format!("{:0>16}", r.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_eui_pads_the_serial_or_uses_the_heard_one() {
        assert_eq!(
            dev_eui_for("47003333623", None).as_deref(),
            Some("0000047003333623")
        );
        assert_eq!(
            dev_eui_for("47003333623", Some("00000470033336AB")).as_deref(),
            Some("00000470033336ab")
        );
        assert_eq!(dev_eui_for("not a serial", None), None);
        assert_eq!(dev_eui_for("12345678901234567", None), None);
    }

    #[test]
    fn only_transient_errors_are_retried() {
        assert!(NetworkError::Transient("timeout".into()).is_retryable());
        assert!(
            !NetworkError::Permanent {
                reason: "no such device".into(),
                code: Some("NotFound".into())
            }
            .is_retryable()
        );
    }
}
