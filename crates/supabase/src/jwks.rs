//! Parsing a JSON Web Key Set into verification keys.
//!
//! Only public signing keys that tiamat accepts are kept: EC P-256 keys for ES256 and RSA keys
//! (at least 2048 bits) for RS256. A key's own `kty`/`crv`/`alg` decide which algorithm it may
//! verify; the token header never does. Symmetric (`oct`) keys in a JWKS are ignored on purpose:
//! HS256 is only ever verified with the configured shared secret.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

/// Smallest RSA modulus accepted, in bytes (2048 bits).
const MIN_RSA_MODULUS_BYTES: usize = 256;
/// Largest RSA modulus accepted, in bytes (8192 bits); bounds the verification cost.
const MAX_RSA_MODULUS_BYTES: usize = 1024;
/// Length of one P-256 coordinate, in bytes.
const P256_COORDINATE_BYTES: usize = 32;

/// The asymmetric algorithms a JWKS key can be used with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AsymmetricAlg {
    Es256,
    Rs256,
}

impl AsymmetricAlg {
    pub(crate) fn from_header(alg: &str) -> Option<Self> {
        match alg {
            "ES256" => Some(Self::Es256),
            "RS256" => Some(Self::Rs256),
            _ => None,
        }
    }

    pub(crate) fn algorithm(self) -> Algorithm {
        match self {
            Self::Es256 => Algorithm::ES256,
            Self::Rs256 => Algorithm::RS256,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
        }
    }
}

/// A public key from the JWKS together with the one algorithm it may verify.
pub(crate) struct VerificationKey {
    pub(crate) alg: AsymmetricAlg,
    pub(crate) key: DecodingKey,
}

pub(crate) type KeyMap = HashMap<String, Arc<VerificationKey>>;

/// The usable keys of a JWKS document, keyed by `kid`.
pub(crate) struct ParsedJwks {
    pub(crate) keys: KeyMap,
    pub(crate) skipped: usize,
}

#[derive(Deserialize)]
struct RawJwkSet {
    keys: Vec<serde_json::Value>,
}

/// The JWK members we look at; anything else is ignored.
#[derive(Deserialize)]
struct RawJwk {
    kty: Option<String>,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    public_key_use: Option<String>,
    key_ops: Option<Vec<String>>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

/// Parses a JWKS document. Fails only when the document itself is not a JWKS; single keys that
/// are unusable are skipped (and counted) so one odd key cannot hide the others.
pub(crate) fn parse_jwks(body: &[u8]) -> Result<ParsedJwks, String> {
    let set: RawJwkSet = serde_json::from_slice(body)
        .map_err(|err| format!("JWKS document is not valid JSON with a `keys` array: {err}"))?;
    let mut keys = KeyMap::new();
    let mut skipped = 0;
    for value in set.keys {
        match parse_key(value) {
            Ok((kid, key)) => match keys.entry(kid) {
                Entry::Occupied(existing) => {
                    tracing::warn!(kid = %existing.key(), "JWKS lists the same kid twice; keeping the first");
                    skipped += 1;
                }
                Entry::Vacant(slot) => {
                    slot.insert(Arc::new(key));
                }
            },
            Err(reason) => {
                tracing::debug!(reason, "skipping a JWKS key");
                skipped += 1;
            }
        }
    }
    Ok(ParsedJwks { keys, skipped })
}

fn parse_key(value: serde_json::Value) -> Result<(String, VerificationKey), &'static str> {
    let jwk: RawJwk = serde_json::from_value(value).map_err(|_| "key is not a JWK object")?;
    let kid = jwk
        .kid
        .as_deref()
        .filter(|kid| !kid.is_empty())
        .ok_or("key has no kid")?
        .to_owned();
    if let Some(public_key_use) = jwk.public_key_use.as_deref()
        && public_key_use != "sig"
    {
        return Err("key is not a signature key (use != sig)");
    }
    if let Some(ops) = &jwk.key_ops
        && !ops.iter().any(|op| op == "verify")
    {
        return Err("key_ops does not allow verify");
    }
    let alg = match jwk.kty.as_deref() {
        Some("EC") => AsymmetricAlg::Es256,
        Some("RSA") => AsymmetricAlg::Rs256,
        _ => return Err("unsupported kty (only EC P-256 and RSA are accepted)"),
    };
    // A key that names an algorithm must name the one its type implies.
    if let Some(declared) = jwk.alg.as_deref()
        && declared != alg.name()
    {
        return Err("key alg does not match its kty");
    }
    let key = match alg {
        AsymmetricAlg::Es256 => ec_key(&jwk)?,
        AsymmetricAlg::Rs256 => rsa_key(&jwk)?,
    };
    Ok((kid, VerificationKey { alg, key }))
}

fn ec_key(jwk: &RawJwk) -> Result<DecodingKey, &'static str> {
    if jwk.crv.as_deref() != Some("P-256") {
        return Err("EC key is not on P-256");
    }
    let x = coordinate(jwk.x.as_deref())?;
    let y = coordinate(jwk.y.as_deref())?;
    DecodingKey::from_ec_components(x, y).map_err(|_| "EC key coordinates are invalid")
}

fn coordinate(value: Option<&str>) -> Result<&str, &'static str> {
    let value = value.ok_or("EC key lacks x or y")?.trim_end_matches('=');
    let bytes = URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| "EC coordinate is not base64url")?;
    if bytes.len() != P256_COORDINATE_BYTES {
        return Err("EC coordinate has the wrong length for P-256");
    }
    Ok(value)
}

fn rsa_key(jwk: &RawJwk) -> Result<DecodingKey, &'static str> {
    let n = decode_unsigned(jwk.n.as_deref(), "RSA key lacks n or it is not base64url")?;
    let e = decode_unsigned(jwk.e.as_deref(), "RSA key lacks e or it is not base64url")?;
    if n.len() < MIN_RSA_MODULUS_BYTES {
        return Err("RSA modulus is shorter than 2048 bits");
    }
    if n.len() > MAX_RSA_MODULUS_BYTES {
        return Err("RSA modulus is too long");
    }
    if e.is_empty() || e.len() > 8 {
        return Err("RSA exponent is out of range");
    }
    Ok(DecodingKey::from_rsa_raw_components(&n, &e))
}

/// Decodes a base64url big-endian unsigned integer and drops leading zero bytes.
fn decode_unsigned(value: Option<&str>, error: &'static str) -> Result<Vec<u8>, &'static str> {
    let value = value.ok_or(error)?.trim_end_matches('=');
    let bytes = URL_SAFE_NO_PAD.decode(value).map_err(|_| error)?;
    let first = bytes
        .iter()
        .position(|byte| *byte != 0)
        .unwrap_or(bytes.len());
    Ok(bytes[first..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ec_jwk(kid: &str) -> serde_json::Value {
        json!({
            "kty": "EC", "crv": "P-256", "alg": "ES256", "kid": kid, "use": "sig",
            "x": "V1n6y5rb3Kw8Xhpaleh3Xw-iyzoKH8Jqj2scp2AMmDo",
            "y": "ELl3EqpyX7gcBS4K-FZGHAC_kZXzmoSJa5Vmb3Gl7qg",
        })
    }

    fn parse(keys: Vec<serde_json::Value>) -> ParsedJwks {
        let body = serde_json::to_vec(&json!({ "keys": keys })).unwrap();
        parse_jwks(&body).unwrap()
    }

    #[test]
    fn keeps_a_p256_key() {
        let parsed = parse(vec![ec_jwk("a")]);
        assert_eq!(parsed.keys.len(), 1);
        assert_eq!(parsed.keys["a"].alg, AsymmetricAlg::Es256);
        assert_eq!(parsed.skipped, 0);
    }

    #[test]
    fn skips_keys_that_cannot_be_used() {
        let mut wrong_alg = ec_jwk("wrong-alg");
        wrong_alg["alg"] = json!("RS256");
        let mut encryption = ec_jwk("enc");
        encryption["use"] = json!("enc");
        let mut no_kid = ec_jwk("");
        no_kid.as_object_mut().unwrap().remove("kid");
        let mut wrong_curve = ec_jwk("p384");
        wrong_curve["crv"] = json!("P-384");
        let symmetric = json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"});
        let short_rsa = json!({"kty": "RSA", "kid": "rsa-512", "n": URL_SAFE_NO_PAD.encode([0xC5u8; 64]), "e": "AQAB"});
        let no_verify = {
            let mut key = ec_jwk("sign-only");
            key["key_ops"] = json!(["sign"]);
            key
        };
        let parsed = parse(vec![
            wrong_alg,
            encryption,
            no_kid,
            wrong_curve,
            symmetric,
            short_rsa,
            no_verify,
            json!("not an object"),
            ec_jwk("good"),
        ]);
        assert_eq!(parsed.keys.len(), 1, "only the good key survives");
        assert!(parsed.keys.contains_key("good"));
        assert_eq!(parsed.skipped, 8);
    }

    #[test]
    fn duplicate_kid_keeps_the_first() {
        let parsed = parse(vec![ec_jwk("a"), ec_jwk("a")]);
        assert_eq!(parsed.keys.len(), 1);
        assert_eq!(parsed.skipped, 1);
    }

    #[test]
    fn rejects_a_document_without_keys() {
        assert!(parse_jwks(br#"{"nope": []}"#).is_err());
        assert!(parse_jwks(b"<html>").is_err());
    }

    #[test]
    fn empty_key_set_is_valid() {
        let parsed = parse_jwks(br#"{"keys": []}"#).unwrap();
        assert!(parsed.keys.is_empty());
    }
}
