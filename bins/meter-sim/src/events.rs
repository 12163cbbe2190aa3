//! ChirpStack v4 HTTP-integration events, built with ChirpStack's own message types and
//! serialized with their canonical JSON (pbjson), so they are byte-for-byte the shape tiamat
//! parses.

use chirpstack_api::common::DeviceClass;
use chirpstack_api::gw;
use chirpstack_api::integration as ci;
use chirpstack_api::pbjson_types::Timestamp;
use chrono::{DateTime, Utc};

/// The device as events describe it.
#[derive(Debug, Clone)]
pub(crate) struct DeviceMeta {
    pub dev_eui: String,
    pub name: String,
    pub application_id: String,
    pub device_profile_id: String,
}

/// What every event says about the network and the gateway that heard the meter.
#[derive(Debug, Clone)]
pub(crate) struct Radio {
    pub gateway_id: String,
    pub rssi: i32,
    pub snr: f32,
}

const TENANT_ID: &str = "00000000-0000-4000-8000-00000000c0de";

fn timestamp(t: DateTime<Utc>) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    })
}

fn device_info(d: &DeviceMeta) -> Option<ci::DeviceInfo> {
    Some(ci::DeviceInfo {
        tenant_id: TENANT_ID.into(),
        tenant_name: "meter-sim".into(),
        application_id: d.application_id.clone(),
        application_name: "meters".into(),
        device_profile_id: d.device_profile_id.clone(),
        device_profile_name: "CALIN LoRaWAN".into(),
        device_name: d.name.clone(),
        dev_eui: d.dev_eui.clone(),
        device_class_enabled: DeviceClass::ClassA as i32,
        ..Default::default()
    })
}

fn to_json<T: serde::Serialize>(event: &T) -> serde_json::Value {
    // The pbjson serializers of plain messages do not fail.
    serde_json::to_value(event).unwrap_or(serde_json::Value::Null)
}

pub(crate) fn txack(
    d: &DeviceMeta,
    radio: &Radio,
    queue_item_id: &str,
    downlink_id: u32,
    f_cnt_down: u32,
    now: DateTime<Utc>,
) -> serde_json::Value {
    to_json(&ci::TxAckEvent {
        downlink_id,
        time: timestamp(now),
        device_info: device_info(d),
        queue_item_id: queue_item_id.to_owned(),
        f_cnt_down,
        gateway_id: radio.gateway_id.clone(),
        tx_info: Some(gw::DownlinkTxInfo {
            frequency: 869_525_000,
            power: 14,
            modulation: Some(gw::Modulation {
                parameters: Some(gw::modulation::Parameters::Lora(gw::LoraModulationInfo {
                    bandwidth: 125_000,
                    spreading_factor: 9,
                    code_rate: gw::CodeRate::Cr45 as i32,
                    polarization_inversion: true,
                    ..Default::default()
                })),
            }),
            ..Default::default()
        }),
    })
}

pub(crate) fn ack(
    d: &DeviceMeta,
    queue_item_id: &str,
    deduplication_id: &str,
    acknowledged: bool,
    f_cnt_down: u32,
    now: DateTime<Utc>,
) -> serde_json::Value {
    to_json(&ci::AckEvent {
        deduplication_id: deduplication_id.to_owned(),
        time: timestamp(now),
        device_info: device_info(d),
        queue_item_id: queue_item_id.to_owned(),
        acknowledged,
        f_cnt_down,
    })
}

pub(crate) fn up(
    d: &DeviceMeta,
    radio: &Radio,
    deduplication_id: &str,
    f_cnt: u32,
    data: Vec<u8>,
    now: DateTime<Utc>,
) -> serde_json::Value {
    to_json(&ci::UplinkEvent {
        deduplication_id: deduplication_id.to_owned(),
        time: timestamp(now),
        device_info: device_info(d),
        dev_addr: format!("{:08x}", fnv(&d.dev_eui)),
        adr: true,
        dr: 3,
        f_cnt,
        f_port: 1,
        confirmed: false,
        data,
        rx_info: vec![gw::UplinkRxInfo {
            gateway_id: radio.gateway_id.clone(),
            uplink_id: f_cnt,
            rssi: radio.rssi,
            snr: radio.snr,
            crc_status: gw::CrcStatus::CrcOk as i32,
            ns_time: timestamp(now),
            ..Default::default()
        }],
        tx_info: Some(gw::UplinkTxInfo {
            frequency: 868_100_000,
            modulation: Some(gw::Modulation {
                parameters: Some(gw::modulation::Parameters::Lora(gw::LoraModulationInfo {
                    bandwidth: 125_000,
                    spreading_factor: 9,
                    code_rate: gw::CodeRate::Cr45 as i32,
                    ..Default::default()
                })),
            }),
        }),
        region_config_id: "eu868".into(),
        ..Default::default()
    })
}

/// A stable device address per DevEUI (FNV-1a, 32 bits), as if the meter had joined once.
fn fnv(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}
