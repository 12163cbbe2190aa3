//! STS tokens without a command: generated for an operator to deliver by hand, in bulk for
//! meters out of reach (offline CLEAR_TAMPER), and manual retries of failed interactions.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, post, web};
use chrono::{DateTime, Utc};
use kernel::{DomainError, FieldError, MeterId};
use meters::{InteractionId, IssuedToken, TokenKind};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::State;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, Problem};

/// Rows accepted by the offline CLEAR_TAMPER endpoint.
pub const MAX_OFFLINE_ROWS: usize = 5_000;
/// Enough for 5,000 lines of a serial and a 32-digit key.
const MAX_OFFLINE_BODY: usize = 1024 * 1024;

/// The token types that can be generated on their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TokenType {
    TopUp,
    ClearCredit,
    ClearTamper,
    SetPowerLimit,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateToken {
    pub kind: TokenType,
    /// TOP_UP: watt-hours (above 0).
    pub energy_wh: Option<i64>,
    /// SET_POWER_LIMIT: watts (0 removes the limit).
    pub power_limit_w: Option<i32>,
}

impl GenerateToken {
    fn token_kind(&self) -> Result<TokenKind, DomainError> {
        let mut errors = Vec::new();
        let only = |errors: &mut Vec<FieldError>, field: &str, present: bool, kind: &str| {
            if present {
                errors.push(FieldError::new(field, format!("only {kind} takes it")));
            }
        };
        let kind = match self.kind {
            TokenType::TopUp => {
                only(
                    &mut errors,
                    "power_limit_w",
                    self.power_limit_w.is_some(),
                    "SET_POWER_LIMIT",
                );
                match self.energy_wh {
                    Some(wh) if wh > 0 => Some(TokenKind::TopUp { energy_wh: wh }),
                    _ => {
                        errors.push(FieldError::new(
                            "energy_wh",
                            "TOP_UP needs an energy above 0 Wh",
                        ));
                        None
                    }
                }
            }
            TokenType::SetPowerLimit => {
                only(&mut errors, "energy_wh", self.energy_wh.is_some(), "TOP_UP");
                match self.power_limit_w {
                    Some(w) if w >= 0 => Some(TokenKind::SetPowerLimit { watts: w }),
                    _ => {
                        errors.push(FieldError::new(
                            "power_limit_w",
                            "SET_POWER_LIMIT needs a power limit of 0 W (no limit) or more",
                        ));
                        None
                    }
                }
            }
            TokenType::ClearCredit => {
                only(&mut errors, "energy_wh", self.energy_wh.is_some(), "TOP_UP");
                only(
                    &mut errors,
                    "power_limit_w",
                    self.power_limit_w.is_some(),
                    "SET_POWER_LIMIT",
                );
                Some(TokenKind::ClearCredit)
            }
            TokenType::ClearTamper => {
                only(&mut errors, "energy_wh", self.energy_wh.is_some(), "TOP_UP");
                only(
                    &mut errors,
                    "power_limit_w",
                    self.power_limit_w.is_some(),
                    "SET_POWER_LIMIT",
                );
                Some(TokenKind::ClearTamper)
            }
        };
        match kind {
            Some(kind) if errors.is_empty() => Ok(kind),
            _ => Err(DomainError::Validation(errors)),
        }
    }
}

/// A generated token. Shown once: tiamat does not keep it.
#[derive(Debug, Serialize, ToSchema)]
pub struct GeneratedToken {
    pub meter_id: MeterId,
    pub kind: TokenType,
    pub energy_wh: Option<i64>,
    pub power_limit_w: Option<i32>,
    /// The 20-digit STS token.
    pub token: String,
    /// The STS issue time (strictly increasing per meter).
    pub issued_at: DateTime<Utc>,
}

impl From<IssuedToken> for GeneratedToken {
    fn from(t: IssuedToken) -> Self {
        let (kind, energy_wh, power_limit_w) = match t.kind {
            TokenKind::TopUp { energy_wh } => (TokenType::TopUp, Some(energy_wh), None),
            TokenKind::ClearCredit => (TokenType::ClearCredit, None, None),
            TokenKind::ClearTamper => (TokenType::ClearTamper, None, None),
            TokenKind::SetPowerLimit { watts } => (TokenType::SetPowerLimit, None, Some(watts)),
        };
        GeneratedToken {
            meter_id: t.meter_id,
            kind,
            energy_wh,
            power_limit_w,
            token: t.token.expose().to_owned(),
            issued_at: t.issued_at,
        }
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(offline_clear_tamper)
        .service(generate)
        .service(retry_interaction);
}

/// Generates an STS token without sending it, for an operator to deliver by hand (to send one
/// through the network, use `POST /meters/{id}/commands`; to deliver a token you hold, a
/// `DELIVER_PREEXISTING_TOKEN` command). Issue times stay strictly increasing per meter, so a
/// token generated here and not used makes older unused tokens of the meter unusable. Audited
/// without the token. Needs `meter_command` (`order_manage` for TOP_UP). 503 when no generator
/// is configured. Send an `Idempotency-Key` to make a retry return the same token.
#[utoipa::path(post, path = "/api/v1/meters/{id}/tokens", tag = "tokens", request_body = GenerateToken,
    responses((status = 201, body = GeneratedToken), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
#[post("/meters/{id}/tokens")]
pub async fn generate(
    caller: Caller,
    state: State,
    id: web::Path<i64>,
    body: web::Json<GenerateToken>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    let b = body.into_inner();
    let kind = b.token_kind()?;
    let fingerprint = serde_json::to_value(&b).unwrap_or_default();
    let meter = MeterId(*id);
    crate::idempotency::run(&state, &caller, &req, &fingerprint, || async {
        let issued = state
            .services
            .commands
            .issue_token(&caller, meter, kind, None)
            .await?;
        Ok((
            StatusCode::CREATED,
            serde_json::to_value(GeneratedToken::from(issued)).unwrap_or_default(),
        ))
    })
    .await
}

/// One `serial,decoder_key` line of the offline CSV.
fn parse_offline_csv(body: &[u8]) -> Result<Vec<(String, Option<String>)>, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::BadRequest("the CSV is not UTF-8".into()))?;
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let number = i + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if i == 0
            && fields
                .first()
                .is_some_and(|f| f.eq_ignore_ascii_case("serial"))
        {
            continue;
        }
        match fields.as_slice() {
            [serial] | [serial, ""] if !serial.is_empty() => {
                rows.push(((*serial).to_owned(), None))
            }
            [serial, key] if !serial.is_empty() => {
                rows.push(((*serial).to_owned(), Some((*key).to_owned())))
            }
            _ => errors.push(FieldError::new(
                format!("line {number}"),
                "expected `serial,decoder_key` (the key may be empty)",
            )),
        }
    }
    if !errors.is_empty() {
        return Err(DomainError::Validation(errors).into());
    }
    if rows.is_empty() {
        return Err(DomainError::invalid("body", "the CSV has no rows").into());
    }
    if rows.len() > MAX_OFFLINE_ROWS {
        return Err(DomainError::invalid(
            "body",
            &format!("at most {MAX_OFFLINE_ROWS} rows per request"),
        )
        .into());
    }
    Ok(rows)
}

/// A CSV field, quoted when it needs to be.
fn csv_field(v: &str) -> String {
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_owned()
    }
}

fn row_error(e: &DomainError) -> String {
    match e {
        DomainError::Validation(errs) => errs
            .iter()
            .map(|f| format!("{}: {}", f.field, f.message))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

/// CLEAR_TAMPER tokens in bulk for meters out of network reach. The body is `text/csv`, one
/// `serial,decoder_key` line per meter (a `serial,...` header line is optional; an empty key
/// uses the key on file), at most 5,000 rows. The answer is `text/csv` with `serial,token,error`
/// for every row in order: a row that failed has an empty token and says why. A malformed line
/// is 422 naming the line. Needs `meter_command`; 503 when no generator is configured.
#[utoipa::path(post, path = "/api/v1/meters/offline-clear-tamper-tokens", tag = "tokens",
    request_body(content = String, content_type = "text/csv"),
    responses((status = 200, body = String, content_type = "text/csv"), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 413, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
#[post("/meters/offline-clear-tamper-tokens")]
pub async fn offline_clear_tamper(
    caller: Caller,
    state: State,
    req: HttpRequest,
    mut payload: web::Payload,
) -> ApiResult<HttpResponse> {
    use futures_util::StreamExt;
    let content_type = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence != "text/csv" && essence != "text/plain" {
        return Err(ApiError::BadRequest("send the rows as text/csv".into()));
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(e.to_string()))?;
        if body.len() + chunk.len() > MAX_OFFLINE_BODY {
            return Err(ApiError::PayloadTooLarge(format!(
                "the CSV is larger than {MAX_OFFLINE_BODY} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    let rows = parse_offline_csv(&body)?;
    let results = state
        .services
        .commands
        .offline_clear_tamper_tokens(&caller, rows)
        .await?;
    let mut out = String::from("serial,token,error\n");
    for (serial, result) in results {
        let (token, error) = match result {
            Ok(t) => (t.token.expose().to_owned(), String::new()),
            Err(e) => (String::new(), row_error(&e)),
        };
        out.push_str(&format!(
            "{},{},{}\n",
            csv_field(&serial),
            csv_field(&token),
            csv_field(&error)
        ));
    }
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .body(out))
}

/// Retries a FAILED interaction as a new one with the same type and arguments (409 for any other
/// status, or when it was retried already). Token commands get a newly generated token, since a
/// failed token may have been used or refused; a pre-existing token is delivered again. The new
/// interaction's `retry_of` names the failed one. Needs the permission the command needs. Send an
/// `Idempotency-Key` to make repeats safe.
#[utoipa::path(post, path = "/api/v1/interactions/{id}/retry", tag = "commands",
    responses((status = 201, body = meters::InteractionView), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 503, body = Problem)))]
#[post("/interactions/{id}/retry")]
pub async fn retry_interaction(
    caller: Caller,
    state: State,
    id: web::Path<i64>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    let id = InteractionId(*id);
    let fingerprint = serde_json::json!({"retry": id});
    crate::idempotency::run(&state, &caller, &req, &fingerprint, || async {
        let (view, _) = state.services.commands.retry(&caller, id).await?;
        Ok((
            StatusCode::CREATED,
            serde_json::to_value(&view).unwrap_or_default(),
        ))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_lines_header_and_errors() {
        let rows =
            parse_offline_csv(b"serial,decoder_key\n47003333623,ABCD\n\n47003333624,\n").unwrap();
        assert_eq!(
            rows,
            vec![
                ("47003333623".to_owned(), Some("ABCD".to_owned())),
                ("47003333624".to_owned(), None)
            ]
        );
        let Err(ApiError::Domain(DomainError::Validation(errs))) =
            parse_offline_csv(b"1,k\n2,k,extra\n,k\n")
        else {
            panic!("malformed lines are refused")
        };
        assert_eq!(
            errs.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(),
            ["line 2", "line 3"]
        );
        assert!(parse_offline_csv(b"\n\n").is_err());
        assert!(parse_offline_csv(&[0xff, 0xfe]).is_err());
        let many = "1,k\n".repeat(MAX_OFFLINE_ROWS + 1);
        assert!(parse_offline_csv(many.as_bytes()).is_err());
    }

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a, b"), "\"a, b\"");
        assert_eq!(csv_field("say \"x\""), "\"say \"\"x\"\"\"");
    }

    #[test]
    fn token_arguments_are_checked_per_type() {
        let b = |kind, energy_wh, power_limit_w| GenerateToken {
            kind,
            energy_wh,
            power_limit_w,
        };
        assert_eq!(
            b(TokenType::TopUp, Some(500), None).token_kind().unwrap(),
            TokenKind::TopUp { energy_wh: 500 }
        );
        assert_eq!(
            b(TokenType::SetPowerLimit, None, Some(0))
                .token_kind()
                .unwrap(),
            TokenKind::SetPowerLimit { watts: 0 }
        );
        assert_eq!(
            b(TokenType::ClearCredit, None, None).token_kind().unwrap(),
            TokenKind::ClearCredit
        );
        assert!(b(TokenType::TopUp, None, None).token_kind().is_err());
        assert!(b(TokenType::TopUp, Some(0), None).token_kind().is_err());
        assert!(
            b(TokenType::SetPowerLimit, None, Some(-1))
                .token_kind()
                .is_err()
        );
        assert!(
            b(TokenType::ClearTamper, Some(1), None)
                .token_kind()
                .is_err()
        );
    }
}
