//! STS tokens (§5.1): what to generate for a command, and the meter's monotonic issue clock.

use chrono::{DateTime, Duration, Utc};
use grids::vocab::CommunicationProtocol;
use kernel::MeterId;

use crate::intake::IntakeRequest;
use crate::kind::InteractionType;

/// What a generated token does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// Adds energy (watt-hours; the vendors take kWh with 0.1 resolution).
    TopUp {
        energy_wh: i64,
    },
    ClearCredit,
    ClearTamper,
    SetPowerLimit {
        watts: i32,
    },
}

impl TokenKind {
    /// The token a request needs generated; `None` when it needs none (including
    /// DELIVER_PREEXISTING_TOKEN, whose token the caller supplies) or lacks its argument.
    pub fn for_request(request: &IntakeRequest) -> Option<TokenKind> {
        use InteractionType as T;
        match request.kind {
            T::TopUp => request
                .energy_wh
                .map(|energy_wh| TokenKind::TopUp { energy_wh }),
            T::ClearCredit => Some(TokenKind::ClearCredit),
            T::ClearTamper => Some(TokenKind::ClearTamper),
            T::SetPowerLimit => request
                .power_limit_w
                .map(|watts| TokenKind::SetPowerLimit { watts }),
            T::ReadCredit
            | T::ReadVoltage
            | T::ReadCurrent
            | T::ReadPower
            | T::ReadPowerLimit
            | T::ReadVersion
            | T::ReadDate
            | T::ReadTime
            | T::TurnOn
            | T::TurnOff
            | T::SetDate
            | T::SetTime
            | T::DeliverPreexistingToken
            | T::ReadReport
            | T::JoinNetwork => None,
        }
    }
}

/// Everything a token generator (NXT STS service, CALIN V1 or V2 API) needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub meter_id: MeterId,
    /// The meter's serial number.
    pub external_reference: String,
    pub protocol: CommunicationProtocol,
    /// The STS decoder key (LoRaWAN meters; the CALIN APIs hold their own).
    pub decoder_key: Option<String>,
    pub kind: TokenKind,
    /// From [`next_sts_issue_time`]; persisted before generating.
    pub issued_at: DateTime<Utc>,
}

/// A generated STS token. It is worth money until used, so `Debug` shows only its last digits.
#[derive(Clone, PartialEq, Eq)]
pub struct StsToken(String);

impl StsToken {
    /// Whitespace is dropped (tokens are often typed in groups of four).
    pub fn new(token: &str) -> Self {
        Self(token.chars().filter(|c| !c.is_whitespace()).collect())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for StsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.chars().count();
        let tail: String = self.0.chars().skip(n.saturating_sub(4)).collect();
        write!(f, "StsToken(…{tail})")
    }
}

/// The issue time for the meter's next token. STS meters reject a token whose issue time is not
/// newer than the last one they accepted, at minute resolution: if the last issue was less than
/// a minute ago (or lies in the future), use one minute after it; otherwise now.
pub fn next_sts_issue_time(last: Option<DateTime<Utc>>, now: DateTime<Utc>) -> DateTime<Utc> {
    match last {
        Some(last) if now - last < Duration::minutes(1) => last + Duration::minutes(1),
        Some(_) | None => now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::Origin;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()
    }

    #[test]
    fn issue_times_strictly_increase_by_the_minute() {
        assert_eq!(next_sts_issue_time(None, now()), now());
        let long_ago = now() - Duration::minutes(5);
        assert_eq!(next_sts_issue_time(Some(long_ago), now()), now());
        let exactly = now() - Duration::minutes(1);
        assert_eq!(next_sts_issue_time(Some(exactly), now()), now());
        let recent = now() - Duration::seconds(20);
        assert_eq!(
            next_sts_issue_time(Some(recent), now()),
            recent + Duration::minutes(1)
        );
        let future = now() + Duration::minutes(3);
        assert_eq!(
            next_sts_issue_time(Some(future), now()),
            future + Duration::minutes(1)
        );
        // A burst of tokens in the same second gets one minute each.
        let mut last = None;
        let mut issued = Vec::new();
        for _ in 0..3 {
            let at = next_sts_issue_time(last, now());
            issued.push(at);
            last = Some(at);
        }
        assert_eq!(
            issued,
            [
                now(),
                now() + Duration::minutes(1),
                now() + Duration::minutes(2)
            ]
        );
    }

    #[test]
    fn token_kinds_for_requests() {
        let mut r = IntakeRequest::new(MeterId(1), InteractionType::TopUp, Origin::Order);
        assert_eq!(TokenKind::for_request(&r), None);
        r.energy_wh = Some(1500);
        assert_eq!(
            TokenKind::for_request(&r),
            Some(TokenKind::TopUp { energy_wh: 1500 })
        );
        let mut r = IntakeRequest::new(MeterId(1), InteractionType::SetPowerLimit, Origin::User);
        r.power_limit_w = Some(250);
        assert_eq!(
            TokenKind::for_request(&r),
            Some(TokenKind::SetPowerLimit { watts: 250 })
        );
        for kind in InteractionType::ALL {
            let r = IntakeRequest {
                energy_wh: Some(1),
                power_limit_w: Some(1),
                ..IntakeRequest::new(MeterId(1), kind, Origin::User)
            };
            assert_eq!(
                TokenKind::for_request(&r).is_some(),
                kind.needs_generated_token(),
                "{kind}"
            );
        }
    }

    #[test]
    fn tokens_hide_in_debug_and_drop_whitespace() {
        let t = StsToken::new("1234 5678 9012 3456 7890");
        assert_eq!(t.expose(), "12345678901234567890");
        assert_eq!(format!("{t:?}"), "StsToken(…7890)");
    }
}
