//! ChirpStack v4 HTTP-integration events (`POST …?event=up|join|ack|txack|log|status|location`),
//! parsed with the `chirpstack_api` crate's own message types from JSON (the default encoding) or
//! Protobuf, and reduced to what tiamat acts on. Each event gets a deduplication key: ChirpStack
//! does not retry, but the same uplink heard twice or a replayed request must count once.

pub mod grpc;

pub use grpc::{ChirpstackDeviceApi, ChirpstackSettings};

use chirpstack_api::integration as ci;
use chrono::{DateTime, TimeZone, Utc};
use prost::Message;

/// How the integration is configured to encode events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Protobuf,
}

impl Encoding {
    /// From the request's `Content-Type`: octet-stream is Protobuf, anything else JSON.
    pub fn from_content_type(ct: Option<&str>) -> Self {
        match ct {
            Some(c)
                if c.starts_with("application/octet-stream")
                    || c.starts_with("application/x-protobuf") =>
            {
                Encoding::Protobuf
            }
            _ => Encoding::Json,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ParseError {
    #[error("the `{event}` event body is not valid {encoding}: {reason}")]
    Malformed {
        event: String,
        encoding: &'static str,
        reason: String,
    },
    #[error("the event has no deduplication key")]
    NoKey,
}

/// What an event tells us, beyond its envelope.
#[derive(Debug, Clone, PartialEq)]
pub enum Detail {
    Up {
        f_cnt: u32,
        f_port: u32,
        data: Vec<u8>,
        /// Strongest reception among the gateways that heard it.
        best_rssi: Option<i32>,
        best_snr: Option<f64>,
        gateways: Vec<String>,
    },
    Join,
    /// A confirmed downlink was acknowledged (or not: NACK / timeout).
    Ack {
        queue_item_id: String,
        acknowledged: bool,
    },
    /// A gateway accepted the downlink for transmission.
    TxAck {
        queue_item_id: String,
        gateway_id: String,
    },
    Log {
        level: String,
        code: String,
        description: String,
    },
    Status {
        battery_level: Option<f32>,
        margin: i32,
    },
    Location,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeviceEvent {
    /// The `event` query parameter.
    pub event: String,
    pub dedup_key: String,
    pub dev_eui: Option<String>,
    pub time: Option<DateTime<Utc>>,
    pub detail: Detail,
    /// The event as ChirpStack's canonical JSON, for storage (also for Protobuf bodies).
    pub json: serde_json::Value,
}

/// Events that we accept but do not act on (`integration`, anything new).
pub fn is_known(event: &str) -> bool {
    matches!(
        event,
        "up" | "join" | "ack" | "txack" | "log" | "status" | "location"
    )
}

fn timestamp(t: &Option<chirpstack_api::pbjson_types::Timestamp>) -> Option<DateTime<Utc>> {
    t.as_ref().and_then(|t| {
        Utc.timestamp_opt(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
            .single()
    })
}

fn dev_eui(d: &Option<ci::DeviceInfo>) -> Option<String> {
    d.as_ref()
        .map(|d| d.dev_eui.to_lowercase())
        .filter(|e| !e.is_empty())
}

fn decode<T>(
    event: &str,
    encoding: Encoding,
    body: &[u8],
) -> Result<(T, serde_json::Value), ParseError>
where
    T: Message + Default + serde::de::DeserializeOwned + serde::Serialize,
{
    let malformed = |enc: &'static str, reason: String| ParseError::Malformed {
        event: event.to_owned(),
        encoding: enc,
        reason,
    };
    match encoding {
        Encoding::Json => {
            let value: serde_json::Value =
                serde_json::from_slice(body).map_err(|e| malformed("JSON", e.to_string()))?;
            if !value.is_object() {
                return Err(malformed("JSON", "expected an object".into()));
            }
            let msg: T = serde_json::from_value(value.clone())
                .map_err(|e| malformed("JSON", e.to_string()))?;
            Ok((msg, value))
        }
        Encoding::Protobuf => {
            let msg = T::decode(body).map_err(|e| malformed("Protobuf", e.to_string()))?;
            let value =
                serde_json::to_value(&msg).map_err(|e| malformed("Protobuf", e.to_string()))?;
            Ok((msg, value))
        }
    }
}

fn keyed(key: String) -> Result<String, ParseError> {
    if key.trim().is_empty() || key.ends_with(':') {
        Err(ParseError::NoKey)
    } else {
        Ok(key)
    }
}

/// Parses a known event. Call [`is_known`] first: unknown events are not errors, just ignored.
pub fn parse(event: &str, encoding: Encoding, body: &[u8]) -> Result<DeviceEvent, ParseError> {
    let (dedup_key, dev_eui, time, detail, json) = match event {
        "up" => {
            let (m, json): (ci::UplinkEvent, _) = decode(event, encoding, body)?;
            let best = m.rx_info.iter().max_by_key(|r| r.rssi);
            let detail = Detail::Up {
                f_cnt: m.f_cnt,
                f_port: m.f_port,
                data: m.data.clone(),
                best_rssi: best.map(|r| r.rssi),
                best_snr: best.map(|r| f64::from(r.snr)),
                gateways: m
                    .rx_info
                    .iter()
                    .map(|r| r.gateway_id.to_lowercase())
                    .collect(),
            };
            (
                format!("up:{}", m.deduplication_id),
                dev_eui(&m.device_info),
                timestamp(&m.time),
                detail,
                json,
            )
        }
        "join" => {
            let (m, json): (ci::JoinEvent, _) = decode(event, encoding, body)?;
            (
                format!("join:{}", m.deduplication_id),
                dev_eui(&m.device_info),
                timestamp(&m.time),
                Detail::Join,
                json,
            )
        }
        "ack" => {
            let (m, json): (ci::AckEvent, _) = decode(event, encoding, body)?;
            let detail = Detail::Ack {
                queue_item_id: m.queue_item_id.clone(),
                acknowledged: m.acknowledged,
            };
            (
                format!("ack:{}", m.deduplication_id),
                dev_eui(&m.device_info),
                timestamp(&m.time),
                detail,
                json,
            )
        }
        "txack" => {
            let (m, json): (ci::TxAckEvent, _) = decode(event, encoding, body)?;
            let detail = Detail::TxAck {
                queue_item_id: m.queue_item_id.clone(),
                gateway_id: m.gateway_id.to_lowercase(),
            };
            let key = if m.queue_item_id.is_empty() {
                String::new()
            } else {
                format!("txack:{}:{}", m.queue_item_id, m.downlink_id)
            };
            (
                key,
                dev_eui(&m.device_info),
                timestamp(&m.time),
                detail,
                json,
            )
        }
        "log" => {
            let (m, json): (ci::LogEvent, _) = decode(event, encoding, body)?;
            let level = ci::LogLevel::try_from(m.level)
                .map(|l| l.as_str_name().to_owned())
                .unwrap_or_else(|_| m.level.to_string());
            let code = ci::LogCode::try_from(m.code)
                .map(|c| c.as_str_name().to_owned())
                .unwrap_or_else(|_| m.code.to_string());
            let eui = dev_eui(&m.device_info);
            let time = timestamp(&m.time);
            // Log events carry no deduplication id: device, time and code identify one.
            let key = format!(
                "log:{}:{}:{}",
                eui.clone().unwrap_or_default(),
                time.map(|t| t.timestamp_nanos_opt().unwrap_or_default())
                    .unwrap_or_default(),
                code
            );
            (
                key,
                eui,
                time,
                Detail::Log {
                    level,
                    code,
                    description: m.description.clone(),
                },
                json,
            )
        }
        "status" => {
            let (m, json): (ci::StatusEvent, _) = decode(event, encoding, body)?;
            let battery = (!m.battery_level_unavailable && !m.external_power_source)
                .then_some(m.battery_level);
            let detail = Detail::Status {
                battery_level: battery,
                margin: m.margin,
            };
            (
                format!("status:{}", m.deduplication_id),
                dev_eui(&m.device_info),
                timestamp(&m.time),
                detail,
                json,
            )
        }
        "location" => {
            let (m, json): (ci::LocationEvent, _) = decode(event, encoding, body)?;
            (
                format!("location:{}", m.deduplication_id),
                dev_eui(&m.device_info),
                timestamp(&m.time),
                Detail::Location,
                json,
            )
        }
        other => {
            return Err(ParseError::Malformed {
                event: other.to_owned(),
                encoding: "-",
                reason: "not a known event".into(),
            });
        }
    };
    Ok(DeviceEvent {
        event: event.to_owned(),
        dedup_key: keyed(dedup_key)?,
        dev_eui,
        time,
        detail,
        json,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn up_json() -> serde_json::Value {
        json!({
            "deduplicationId": "3ac7e3c4-4401-4b8d-9386-a5c902f9202d",
            "time": "2026-11-27T09:34:15.775023242+00:00",
            "deviceInfo": {"tenantId": "52f14cd4-c6f1-4fbd-8f87-4025e1d49242", "tenantName": "NXT",
                "applicationId": "17c82e96-be03-4f38-aef3-f83d48582d97", "applicationName": "meters",
                "deviceProfileId": "14855bf7-d10d-4aee-b618-ebfcb64dc7ad", "deviceProfileName": "calin",
                "deviceName": "47003333623", "devEui": "0101010101010101", "tags": {}},
            "devAddr": "00189440", "adr": true, "dr": 1, "fCnt": 10, "fPort": 1, "confirmed": false,
            "data": "aGVsbG8=",
            "rxInfo": [
                {"gatewayId": "0016c001f153a14c", "uplinkId": 4217106255u32, "rssi": -80, "snr": 10.25, "context": "", "crcStatus": "CRC_OK"},
                {"gatewayId": "0016C001F1500812", "uplinkId": 1, "rssi": -102, "snr": 2.0, "crcStatus": "CRC_OK"}
            ],
            "txInfo": {"frequency": 868100000, "modulation": {"lora": {"bandwidth": 125000, "spreadingFactor": 9, "codeRate": "CR_4_5"}}},
            "regionConfigId": "eu868", "someFutureField": 1
        })
    }

    #[test]
    fn an_uplink_gives_device_gateways_and_best_signal() {
        let body = serde_json::to_vec(&up_json()).unwrap();
        let e = parse("up", Encoding::Json, &body).unwrap();
        assert_eq!(e.dedup_key, "up:3ac7e3c4-4401-4b8d-9386-a5c902f9202d");
        assert_eq!(e.dev_eui.as_deref(), Some("0101010101010101"));
        assert_eq!(e.time.unwrap().timestamp(), 1_795_772_055);
        match e.detail {
            Detail::Up {
                f_cnt,
                data,
                best_rssi,
                best_snr,
                gateways,
                ..
            } => {
                assert_eq!(f_cnt, 10);
                assert_eq!(data, b"hello");
                assert_eq!(best_rssi, Some(-80));
                assert_eq!(best_snr, Some(10.25));
                assert_eq!(gateways, ["0016c001f153a14c", "0016c001f1500812"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn protobuf_bodies_parse_to_the_same_event() {
        let msg: ci::UplinkEvent = serde_json::from_value(up_json()).unwrap();
        let from_pb = parse("up", Encoding::Protobuf, &msg.encode_to_vec()).unwrap();
        let from_json = parse(
            "up",
            Encoding::Json,
            &serde_json::to_vec(&up_json()).unwrap(),
        )
        .unwrap();
        assert_eq!(from_pb.dedup_key, from_json.dedup_key);
        assert_eq!(from_pb.detail, from_json.detail);
    }

    #[test]
    fn acks_txacks_and_logs_have_their_own_keys() {
        let ack = json!({"deduplicationId": "d1", "deviceInfo": {"devEui": "AA"}, "queueItemId": "q-1", "acknowledged": false, "fCntDown": 3});
        let e = parse("ack", Encoding::Json, ack.to_string().as_bytes()).unwrap();
        assert_eq!(
            e.detail,
            Detail::Ack {
                queue_item_id: "q-1".into(),
                acknowledged: false
            }
        );
        assert_eq!(e.dev_eui.as_deref(), Some("aa"));
        let tx = json!({"downlinkId": 7, "deviceInfo": {"devEui": "aa"}, "queueItemId": "q-1", "gatewayId": "GW"});
        let e = parse("txack", Encoding::Json, tx.to_string().as_bytes()).unwrap();
        assert_eq!(e.dedup_key, "txack:q-1:7");
        let log = json!({"time": "2026-11-27T10:00:00Z", "deviceInfo": {"devEui": "aa"}, "level": "ERROR", "code": "EXPIRED", "description": "queue item expired"});
        let e = parse("log", Encoding::Json, log.to_string().as_bytes()).unwrap();
        assert_eq!(
            e.detail,
            Detail::Log {
                level: "ERROR".into(),
                code: "EXPIRED".into(),
                description: "queue item expired".into()
            }
        );
        assert!(e.dedup_key.starts_with("log:aa:"));
    }

    #[test]
    fn malformed_bodies_and_missing_keys_are_errors() {
        assert!(matches!(
            parse("up", Encoding::Json, b"{not json"),
            Err(ParseError::Malformed { .. })
        ));
        assert!(matches!(
            parse("up", Encoding::Json, b"[1,2]"),
            Err(ParseError::Malformed { .. })
        ));
        assert!(matches!(
            parse("up", Encoding::Json, br#"{"fCnt": "ten"}"#),
            Err(ParseError::Malformed { .. })
        ));
        assert!(matches!(
            parse("up", Encoding::Protobuf, &[0xff, 0xff, 0xff]),
            Err(ParseError::Malformed { .. })
        ));
        assert_eq!(
            parse("up", Encoding::Json, br#"{"fCnt": 1}"#),
            Err(ParseError::NoKey)
        );
        assert!(!is_known("integration"));
        assert!(is_known("txack"));
    }
}
