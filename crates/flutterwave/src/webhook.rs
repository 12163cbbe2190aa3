//! Webhook authentication and parsing. Authentication runs on the raw body before anything is
//! parsed; the parsed event only says *which* payment to re-verify, never how much was paid.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The v3 header: the secret hash configured in the dashboard, verbatim.
pub const VERIF_HASH_HEADER: &str = "verif-hash";
/// The newer header: `base64(HMAC-SHA256(key = secret hash, message = raw body))`.
pub const SIGNATURE_HEADER: &str = "flutterwave-signature";

/// Whether a delivery carries proof of the secret hash: a `verif-hash` equal to it, or a
/// `flutterwave-signature` equal to the HMAC of the raw body under it. Both comparisons run in
/// constant time; an empty configured secret authenticates nothing.
pub fn is_authentic(
    secret_hash: &SecretString,
    verif_hash: Option<&str>,
    signature: Option<&str>,
    raw_body: &[u8],
) -> bool {
    let secret = secret_hash.expose_secret().as_bytes();
    if secret.is_empty() {
        return false;
    }
    let by_hash = verif_hash.is_some_and(|h| bool::from(h.trim().as_bytes().ct_eq(secret)));
    let by_signature = signature.is_some_and(|s| {
        let Ok(presented) = STANDARD.decode(s.trim()) else {
            return false;
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
            return false;
        };
        mac.update(raw_body);
        // `verify_slice` compares in constant time.
        mac.verify_slice(&presented).is_ok()
    });
    by_hash || by_signature
}

/// `base64(HMAC-SHA256(secret, body))`, as the provider signs (for tests and tools).
pub fn signature(secret_hash: &str, raw_body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret_hash.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(raw_body);
    STANDARD.encode(mac.finalize().into_bytes())
}

/// What a webhook announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookEvent {
    /// A charge reached a final state at the provider; re-verify `transaction_id`.
    ChargeCompleted {
        transaction_id: String,
        /// Our reference, as the body claims it (used only to find the order).
        tx_ref: Option<String>,
    },
    /// A payout transfer reached a final state; re-read it by id.
    TransferCompleted {
        transfer_id: String,
        reference: Option<String>,
        /// `SUCCESSFUL` or `FAILED`, as the body claims it.
        status: Option<String>,
    },
    /// A refund reached a final state; find ours and re-read it by its refund id.
    RefundCompleted {
        /// The provider's refund id (`data.id`).
        refund_id: Option<String>,
        /// The refunded payment (`data.tx_id`, `data.transaction_id` or v4 `data.charge_id`):
        /// with `amount`, finds our refund when the body has no refund id.
        transaction_id: Option<String>,
        /// What the body says was refunded, when it names a currency we know.
        amount: Option<payments::Money>,
        /// As the body claims it (part of the deduplication key only).
        status: Option<String>,
    },
    /// Anything else (subscriptions, legacy shapes): acknowledged and kept.
    Other { event: String },
}

impl WebhookEvent {
    /// The event name to store (`charge.completed`, ...).
    pub fn name(&self) -> &str {
        match self {
            WebhookEvent::ChargeCompleted { .. } => "charge.completed",
            WebhookEvent::TransferCompleted { .. } => "transfer.completed",
            WebhookEvent::RefundCompleted { .. } => "refund.completed",
            WebhookEvent::Other { event } => event,
        }
    }

    /// Deduplication key: the provider repeats deliveries, and the same transaction id under the
    /// same event is one event.
    pub fn dedup_key(&self, raw_body: &[u8]) -> String {
        match self {
            WebhookEvent::ChargeCompleted { transaction_id, .. } => {
                format!("charge.completed:{transaction_id}")
            }
            WebhookEvent::TransferCompleted {
                transfer_id,
                status,
                ..
            } => format!(
                "transfer.completed:{transfer_id}:{}",
                status.as_deref().unwrap_or("")
            ),
            WebhookEvent::RefundCompleted {
                refund_id,
                transaction_id,
                amount,
                status,
            } => format!(
                "refund.completed:{}:{}:{}:{}",
                refund_id.as_deref().unwrap_or(""),
                transaction_id.as_deref().unwrap_or(""),
                amount.map_or(String::new(), |m| format!(
                    "{}{}",
                    m.minor.0,
                    m.currency.as_str()
                )),
                status.as_deref().unwrap_or("")
            ),
            // No id we understand: identical bodies are the same event.
            WebhookEvent::Other { event } => {
                use sha2::Digest as _;
                let digest = Sha256::digest(raw_body);
                format!("{event}:{}", STANDARD.encode(digest))
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed webhook: {0}")]
pub struct MalformedWebhook(pub String);

/// Parses an authenticated body. A known event without the id to re-verify is malformed.
pub fn parse(raw_body: &[u8]) -> Result<WebhookEvent, MalformedWebhook> {
    let json: Value =
        serde_json::from_slice(raw_body).map_err(|e| MalformedWebhook(format!("not JSON: {e}")))?;
    let event = json
        .get("event")
        .or_else(|| json.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let data = json.get("data");
    let text = |field: &str| data.and_then(|d| d.get(field)).and_then(id_text);
    match event.as_str() {
        "charge.completed" => {
            let transaction_id = text("id")
                .ok_or_else(|| MalformedWebhook("charge.completed without data.id".into()))?;
            Ok(WebhookEvent::ChargeCompleted {
                transaction_id,
                tx_ref: text("tx_ref"),
            })
        }
        "transfer.completed" => {
            let transfer_id = text("id")
                .ok_or_else(|| MalformedWebhook("transfer.completed without data.id".into()))?;
            Ok(WebhookEvent::TransferCompleted {
                transfer_id,
                reference: text("reference"),
                status: text("status"),
            })
        }
        "refund.completed" => {
            let refund_id = text("id");
            let transaction_id = text("tx_id")
                .or_else(|| text("transaction_id"))
                .or_else(|| text("charge_id"));
            if refund_id.is_none() && transaction_id.is_none() {
                return Err(MalformedWebhook(
                    "refund.completed names neither the refund nor the payment".into(),
                ));
            }
            Ok(WebhookEvent::RefundCompleted {
                refund_id,
                transaction_id,
                amount: data.and_then(refunded_amount),
                status: text("status"),
            })
        }
        "" => Ok(WebhookEvent::Other {
            event: "unknown".into(),
        }),
        other => Ok(WebhookEvent::Other {
            event: other.chars().take(64).collect(),
        }),
    }
}

/// `data.amount_refunded` (v3) or `data.amount` in `data.currency`, exactly; `None` when either
/// is missing or unreadable (the refund is then found by its id alone).
fn refunded_amount(data: &Value) -> Option<payments::Money> {
    let currency = data
        .get("currency")
        .and_then(Value::as_str)
        .and_then(|c| kernel::Currency::parse(c.trim()).ok())?;
    let text = match data.get("amount_refunded").or_else(|| data.get("amount"))? {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => return None,
    };
    let minor = crate::amount::to_minor(&text, currency).ok()?;
    Some(payments::Money::new(minor, currency))
}

/// Ids come as numbers (v3) or strings (v4 `chg_...`).
fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() && s.len() <= 128 => Some(s.trim().to_owned()),
        Value::Number(n) if n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "my-webhook-secret-hash";

    fn secret() -> SecretString {
        SecretString::from(SECRET)
    }

    #[test]
    fn verif_hash_must_equal_the_secret() {
        let body = br#"{"event":"charge.completed"}"#;
        assert!(is_authentic(&secret(), Some(SECRET), None, body));
        assert!(!is_authentic(
            &secret(),
            Some("my-webhook-secret-has"),
            None,
            body
        ));
        assert!(!is_authentic(&secret(), Some(""), None, body));
        assert!(!is_authentic(&secret(), None, None, body));
        assert!(!is_authentic(&SecretString::from(""), Some(""), None, body));
    }

    #[test]
    fn signature_must_be_the_hmac_of_the_raw_body() {
        let body = br#"{"event":"charge.completed","data":{"id":1}}"#;
        let good = signature(SECRET, body);
        assert!(is_authentic(&secret(), None, Some(&good), body));
        // Same JSON, different bytes: not the signed body.
        let reformatted = br#"{"event": "charge.completed","data":{"id":1}}"#;
        assert!(!is_authentic(&secret(), None, Some(&good), reformatted));
        assert!(!is_authentic(
            &secret(),
            None,
            Some(&signature("other", body)),
            body
        ));
        assert!(!is_authentic(&secret(), None, Some("not base64!"), body));
        // The secret itself is not a signature.
        assert!(!is_authentic(&secret(), None, Some(SECRET), body));
    }

    #[test]
    fn parses_charge_and_transfer_events() {
        let charge = parse(br#"{"event":"charge.completed","data":{"id":285959875,"tx_ref":"ref-1","amount":100,"status":"successful"}}"#).unwrap();
        assert_eq!(
            charge,
            WebhookEvent::ChargeCompleted {
                transaction_id: "285959875".into(),
                tx_ref: Some("ref-1".into())
            }
        );
        assert_eq!(charge.dedup_key(b""), "charge.completed:285959875");
        let transfer = parse(br#"{"event":"transfer.completed","event.type":"Transfer","data":{"id":396432,"reference":"po-45","status":"FAILED"}}"#).unwrap();
        assert_eq!(
            transfer,
            WebhookEvent::TransferCompleted {
                transfer_id: "396432".into(),
                reference: Some("po-45".into()),
                status: Some("FAILED".into())
            }
        );
        assert_eq!(transfer.dedup_key(b""), "transfer.completed:396432:FAILED");
        let v4 = parse(br#"{"type":"charge.completed","data":{"id":"chg_abc"}}"#).unwrap();
        assert!(
            matches!(v4, WebhookEvent::ChargeCompleted { transaction_id, .. } if transaction_id == "chg_abc")
        );
    }

    #[test]
    fn parses_refund_events_by_id_or_by_payment_and_amount() {
        let by_id = parse(br#"{"event":"refund.completed","data":{"id":880001,"tx_id":7001,"amount_refunded":250.5,"currency":"NGN","status":"completed"}}"#).unwrap();
        let ngn = kernel::Currency::parse("NGN").unwrap();
        assert_eq!(
            by_id,
            WebhookEvent::RefundCompleted {
                refund_id: Some("880001".into()),
                transaction_id: Some("7001".into()),
                amount: Some(payments::Money::new(25_050, ngn)),
                status: Some("completed".into()),
            }
        );
        assert_eq!(by_id.name(), "refund.completed");
        assert_eq!(
            by_id.dedup_key(b""),
            "refund.completed:880001:7001:25050NGN:completed"
        );
        let by_payment = parse(
            br#"{"event":"refund.completed","data":{"transaction_id":"7002","amount":"100","currency":"NGN"}}"#,
        )
        .unwrap();
        assert!(matches!(
            by_payment,
            WebhookEvent::RefundCompleted { refund_id: None, transaction_id: Some(t), amount: Some(m), .. }
                if t == "7002" && m.minor.0 == 10_000
        ));
        // An amount in a currency we cannot read exactly is no amount.
        let odd = parse(
            br#"{"event":"refund.completed","data":{"id":1,"amount":1.234,"currency":"NGN"}}"#,
        )
        .unwrap();
        assert!(matches!(
            odd,
            WebhookEvent::RefundCompleted { amount: None, .. }
        ));
        assert!(parse(br#"{"event":"refund.completed","data":{"status":"completed"}}"#).is_err());
    }

    #[test]
    fn other_and_broken_shapes() {
        let legacy = parse(br#"{"txRef":"x","event.type":"CARD_TRANSACTION"}"#).unwrap();
        assert_eq!(legacy.name(), "unknown");
        let a = legacy.dedup_key(b"one");
        assert_ne!(a, legacy.dedup_key(b"two"));
        assert_eq!(a, legacy.dedup_key(b"one"));
        assert!(parse(br#"{"event":"charge.completed","data":{}}"#).is_err());
        assert!(parse(br#"{"event":"charge.completed","data":{"id":-4}}"#).is_err());
        assert!(parse(b"not json").is_err());
        assert_eq!(
            parse(br#"{"event":"refund.completed","data":{"id":3}}"#)
                .unwrap()
                .name(),
            "refund.completed"
        );
    }
}
