//! The gatekeeper (§2.3): may this command be queued for delivery now, must it wait, or will it
//! never work? A pure function of what we know about the meter and its grid.

use chrono::{DateTime, Duration, Utc};
use grids::meters::Meter;
use grids::state::GridState;
use grids::vocab::CommunicationProtocol;
use kernel::DcuId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::InteractionId;
use crate::kind::InteractionType;

/// CALIN V1 firmware that cannot answer READ_POWER_LIMIT.
pub const V1_FIRMWARE_WITHOUT_POWER_LIMIT_READ: &str = "2F6B4584";

/// What the gatekeeper needs to know about the meter.
#[derive(Debug, Clone, PartialEq)]
pub struct MeterFacts {
    pub protocol: CommunicationProtocol,
    pub firmware_version: Option<String>,
    /// `None`: never heard from.
    pub last_seen_at: Option<DateTime<Utc>>,
    /// The gateway the meter is attached to.
    pub dcu_id: Option<DcuId>,
}

impl MeterFacts {
    pub fn of(meter: &Meter) -> Self {
        Self {
            protocol: meter.communication_protocol,
            firmware_version: meter.version.clone(),
            last_seen_at: meter.observed.last_seen_at,
            dcu_id: meter.dcu_id,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayFacts {
    pub id: DcuId,
    pub protocol: CommunicationProtocol,
    pub is_online: bool,
}

/// The grid's digital twin as the gatekeeper sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GridFacts {
    pub is_energised: bool,
    pub gateways: Vec<GatewayFacts>,
}

impl GridFacts {
    pub fn of(state: &GridState) -> Self {
        Self {
            is_energised: state.is_hps_on,
            gateways: state
                .gateways
                .iter()
                .map(|g| GatewayFacts {
                    id: g.id,
                    protocol: g.communication_protocol,
                    is_online: g.is_online,
                })
                .collect(),
        }
    }

    /// False too when the grid has no LoRaWAN gateway at all: nothing can reach the meter.
    pub fn any_lorawan_gateway_online(&self) -> bool {
        self.gateways
            .iter()
            .any(|g| g.protocol == CommunicationProtocol::CalinLorawan && g.is_online)
    }

    /// `None` when the gateway is not known to the twin.
    pub fn gateway_online(&self, id: DcuId) -> Option<bool> {
        self.gateways
            .iter()
            .find(|g| g.id == id)
            .map(|g| g.is_online)
    }
}

/// Why the request is held or refused. Written to the interaction's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum HoldReason {
    GridNotEnergised,
    LorawanGatewaysOffline,
    GatewayOffline {
        #[schema(value_type = i64)]
        dcu_id: DcuId,
    },
    /// A LoRaWAN meter silent for longer than the abort threshold (or never heard from).
    MeterUnseen {
        last_seen_at: Option<DateTime<Utc>>,
    },
    /// A commissioning step for a meter silent for longer than the defer threshold.
    MeterSilent {
        last_seen_at: Option<DateTime<Utc>>,
    },
    /// A commissioning step right after the grid came back: wait for the meter to speak.
    AwaitingFirstContact,
    UnsupportedByProtocol {
        kind: InteractionType,
        protocol: CommunicationProtocol,
    },
    UnsupportedByFirmware {
        kind: InteractionType,
        version: String,
    },
    /// A command on the same attribute is on its way to the meter.
    WaitingForInFlight {
        interaction: InteractionId,
    },
}

impl std::fmt::Display for HoldReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HoldReason::GridNotEnergised => f.write_str("grid not energised"),
            HoldReason::LorawanGatewaysOffline => f.write_str("all LoRaWAN gateways offline"),
            HoldReason::GatewayOffline { dcu_id } => write!(f, "gateway {dcu_id} offline"),
            HoldReason::MeterUnseen { last_seen_at: None } => f.write_str("meter never seen"),
            HoldReason::MeterUnseen {
                last_seen_at: Some(at),
            } => write!(f, "meter not seen since {}", at.to_rfc3339()),
            HoldReason::MeterSilent { .. } => {
                f.write_str("meter has not communicated recently; waiting for it")
            }
            HoldReason::AwaitingFirstContact => {
                f.write_str("meter has not yet communicated after network join")
            }
            HoldReason::UnsupportedByProtocol { kind, protocol } => {
                write!(f, "{kind} cannot be sent over {}", protocol.as_str())
            }
            HoldReason::UnsupportedByFirmware { kind, version } => {
                write!(f, "{kind} is not supported by firmware {version}")
            }
            HoldReason::WaitingForInFlight { interaction } => {
                write!(f, "waiting for in-flight interaction #{interaction}")
            }
        }
    }
}

/// What releases a deferred interaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Release {
    /// The meter is heard from (an uplink, a join, any success).
    MeterHeard,
    /// The named interaction reaches a terminal status.
    InteractionResolved { interaction: InteractionId },
    /// A point in time (a commissioning step's turn, a scheduled send).
    At { at: DateTime<Utc> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "admission", rename_all = "snake_case")]
pub enum Admission {
    /// Queue it for delivery.
    Queue,
    /// Hold it until the grid or its gateways come back (SUSPENDED).
    Suspend(HoldReason),
    /// Never deliver it (ABORTED).
    Abort(HoldReason),
    /// Wait for a turn (DEFERRED).
    Defer { until: Release, reason: HoldReason },
}

/// How the request came about, as far as the gatekeeper cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AdmissionContext {
    /// A step of a commissioning sequence.
    pub from_commissioning: bool,
    /// An operator's explicit retry of a commissioning step.
    pub is_retry: bool,
    /// Re-adjudicated because the grid or a gateway just came back.
    pub after_grid_transition: bool,
}

/// The gatekeeper's thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatePolicy {
    /// A LoRaWAN meter silent for longer is unreachable: commands are aborted.
    pub lorawan_abort_after: Duration,
    /// A commissioning step for a LoRaWAN meter silent for longer waits for it.
    pub commissioning_defer_after: Duration,
}

impl Default for GatePolicy {
    /// The predecessor's: 24 h and 59 min.
    fn default() -> Self {
        Self {
            lorawan_abort_after: Duration::hours(24),
            commissioning_defer_after: Duration::minutes(59),
        }
    }
}

impl GatePolicy {
    /// Checks, first match wins:
    /// 1. the type cannot be sent over the meter's protocol, or its firmware lacks it → ABORT;
    /// 2. the grid is not energised → SUSPEND;
    /// 3. LoRaWAN: no LoRaWAN gateway online; CALIN V1/V2: the meter's gateway offline → SUSPEND;
    /// 4. LoRaWAN commissioning step: an operator retry passes; right after a grid transition,
    ///    or the meter silent for over an hour → DEFER until the meter is heard;
    /// 5. LoRaWAN meter silent for over 24 h (or never seen) → ABORT;
    /// 6. otherwise QUEUE.
    ///
    /// An unknown grid (`None`) blocks nothing.
    pub fn adjudicate(
        &self,
        meter: &MeterFacts,
        grid: Option<&GridFacts>,
        kind: InteractionType,
        ctx: AdmissionContext,
        now: DateTime<Utc>,
    ) -> Admission {
        use CommunicationProtocol as P;

        if !kind.can_send_over(meter.protocol) {
            return Admission::Abort(HoldReason::UnsupportedByProtocol {
                kind,
                protocol: meter.protocol,
            });
        }
        if meter.protocol == P::CalinV1
            && kind == InteractionType::ReadPowerLimit
            && meter.firmware_version.as_deref() == Some(V1_FIRMWARE_WITHOUT_POWER_LIMIT_READ)
        {
            return Admission::Abort(HoldReason::UnsupportedByFirmware {
                kind,
                version: V1_FIRMWARE_WITHOUT_POWER_LIMIT_READ.to_owned(),
            });
        }

        if let Some(grid) = grid {
            if !grid.is_energised {
                return Admission::Suspend(HoldReason::GridNotEnergised);
            }
            match meter.protocol {
                P::CalinLorawan => {
                    if !grid.any_lorawan_gateway_online() {
                        return Admission::Suspend(HoldReason::LorawanGatewaysOffline);
                    }
                }
                P::CalinV1 | P::CalinV2 => {
                    if let Some(dcu_id) = meter.dcu_id
                        && grid.gateway_online(dcu_id) == Some(false)
                    {
                        return Admission::Suspend(HoldReason::GatewayOffline { dcu_id });
                    }
                }
            }
        }

        match meter.protocol {
            P::CalinLorawan => {
                // Never seen counts as infinitely old.
                let silent_longer_than =
                    |d: Duration| meter.last_seen_at.is_none_or(|seen| now - seen > d);
                if ctx.from_commissioning {
                    if ctx.is_retry {
                        return Admission::Queue;
                    }
                    if ctx.after_grid_transition {
                        return Admission::Defer {
                            until: Release::MeterHeard,
                            reason: HoldReason::AwaitingFirstContact,
                        };
                    }
                    if silent_longer_than(self.commissioning_defer_after) {
                        return Admission::Defer {
                            until: Release::MeterHeard,
                            reason: HoldReason::MeterSilent {
                                last_seen_at: meter.last_seen_at,
                            },
                        };
                    }
                }
                if silent_longer_than(self.lorawan_abort_after) {
                    return Admission::Abort(HoldReason::MeterUnseen {
                        last_seen_at: meter.last_seen_at,
                    });
                }
                Admission::Queue
            }
            P::CalinV1 | P::CalinV2 => Admission::Queue,
        }
    }
}

/// [`GatePolicy::adjudicate`] with the predecessor's thresholds.
pub fn gatekeeper(
    meter: &MeterFacts,
    grid: Option<&GridFacts>,
    kind: InteractionType,
    ctx: AdmissionContext,
    now: DateTime<Utc>,
) -> Admission {
    GatePolicy::default().adjudicate(meter, grid, kind, ctx, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use CommunicationProtocol as P;
    use InteractionType as T;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()
    }

    fn meter(protocol: P, seen_minutes_ago: Option<i64>) -> MeterFacts {
        MeterFacts {
            protocol,
            firmware_version: None,
            last_seen_at: seen_minutes_ago.map(|m| now() - Duration::minutes(m)),
            dcu_id: Some(DcuId(3)),
        }
    }

    fn grid(energised: bool, gateways: &[(i64, P, bool)]) -> GridFacts {
        GridFacts {
            is_energised: energised,
            gateways: gateways
                .iter()
                .map(|&(id, protocol, is_online)| GatewayFacts {
                    id: DcuId(id),
                    protocol,
                    is_online,
                })
                .collect(),
        }
    }

    fn healthy() -> GridFacts {
        grid(true, &[(1, P::CalinLorawan, true), (3, P::CalinV1, true)])
    }

    const PLAIN: AdmissionContext = AdmissionContext {
        from_commissioning: false,
        is_retry: false,
        after_grid_transition: false,
    };
    const COMMISSIONING: AdmissionContext = AdmissionContext {
        from_commissioning: true,
        is_retry: false,
        after_grid_transition: false,
    };

    #[test]
    fn healthy_grid_and_recent_meter_queue() {
        for p in [P::CalinLorawan, P::CalinV1, P::CalinV2] {
            assert_eq!(
                gatekeeper(
                    &meter(p, Some(5)),
                    Some(&healthy()),
                    T::TurnOff,
                    PLAIN,
                    now()
                ),
                Admission::Queue,
                "{p:?}"
            );
        }
    }

    #[test]
    fn grid_not_energised_suspends_every_protocol() {
        let g = grid(false, &[(1, P::CalinLorawan, true), (3, P::CalinV1, true)]);
        for p in [P::CalinLorawan, P::CalinV1, P::CalinV2] {
            assert_eq!(
                gatekeeper(&meter(p, Some(5)), Some(&g), T::TurnOn, PLAIN, now()),
                Admission::Suspend(HoldReason::GridNotEnergised)
            );
        }
    }

    #[test]
    fn lorawan_gateways_down_suspends() {
        let g = grid(true, &[(1, P::CalinLorawan, false), (3, P::CalinV1, true)]);
        assert_eq!(
            gatekeeper(
                &meter(P::CalinLorawan, Some(5)),
                Some(&g),
                T::ReadCredit,
                PLAIN,
                now()
            ),
            Admission::Suspend(HoldReason::LorawanGatewaysOffline)
        );
        // A grid with no LoRaWAN gateway at all cannot reach the meter either.
        let g = grid(true, &[(3, P::CalinV1, true)]);
        assert_eq!(
            gatekeeper(
                &meter(P::CalinLorawan, Some(5)),
                Some(&g),
                T::ReadCredit,
                PLAIN,
                now()
            ),
            Admission::Suspend(HoldReason::LorawanGatewaysOffline)
        );
    }

    #[test]
    fn calin_meter_behind_an_offline_gateway_suspends() {
        let g = grid(true, &[(3, P::CalinV2, false)]);
        assert_eq!(
            gatekeeper(
                &meter(P::CalinV2, Some(5)),
                Some(&g),
                T::TurnOn,
                PLAIN,
                now()
            ),
            Admission::Suspend(HoldReason::GatewayOffline { dcu_id: DcuId(3) })
        );
        // An unknown gateway blocks nothing.
        let g = grid(true, &[(9, P::CalinV2, false)]);
        assert_eq!(
            gatekeeper(
                &meter(P::CalinV2, Some(5)),
                Some(&g),
                T::TurnOn,
                PLAIN,
                now()
            ),
            Admission::Queue
        );
    }

    #[test]
    fn lorawan_meter_unseen_for_a_day_aborts() {
        let m = meter(P::CalinLorawan, Some(24 * 60 + 1));
        assert_eq!(
            gatekeeper(&m, Some(&healthy()), T::TurnOff, PLAIN, now()),
            Admission::Abort(HoldReason::MeterUnseen {
                last_seen_at: m.last_seen_at
            })
        );
        // Exactly 24 h is still fine (strictly more aborts).
        let m = meter(P::CalinLorawan, Some(24 * 60));
        assert_eq!(
            gatekeeper(&m, Some(&healthy()), T::TurnOff, PLAIN, now()),
            Admission::Queue
        );
        // Never seen counts as infinitely old.
        assert_eq!(
            gatekeeper(
                &meter(P::CalinLorawan, None),
                Some(&healthy()),
                T::ReadCredit,
                PLAIN,
                now()
            ),
            Admission::Abort(HoldReason::MeterUnseen { last_seen_at: None })
        );
        // CALIN API meters are not judged by last-seen.
        assert_eq!(
            gatekeeper(
                &meter(P::CalinV1, None),
                Some(&healthy()),
                T::ReadCredit,
                PLAIN,
                now()
            ),
            Admission::Queue
        );
    }

    #[test]
    fn a_suspension_wins_over_an_unseen_meter() {
        let g = grid(false, &[]);
        assert_eq!(
            gatekeeper(
                &meter(P::CalinLorawan, None),
                Some(&g),
                T::TurnOff,
                PLAIN,
                now()
            ),
            Admission::Suspend(HoldReason::GridNotEnergised)
        );
    }

    #[test]
    fn commissioning_step_for_a_meter_unseen_for_an_hour_defers() {
        let m = meter(P::CalinLorawan, Some(60));
        assert_eq!(
            gatekeeper(&m, Some(&healthy()), T::ClearTamper, COMMISSIONING, now()),
            Admission::Defer {
                until: Release::MeterHeard,
                reason: HoldReason::MeterSilent {
                    last_seen_at: m.last_seen_at
                }
            }
        );
        // A brand-new meter (never seen) waits rather than aborts.
        assert!(matches!(
            gatekeeper(
                &meter(P::CalinLorawan, None),
                Some(&healthy()),
                T::ClearTamper,
                COMMISSIONING,
                now()
            ),
            Admission::Defer {
                until: Release::MeterHeard,
                ..
            }
        ));
        // Seen recently: goes.
        assert_eq!(
            gatekeeper(
                &meter(P::CalinLorawan, Some(30)),
                Some(&healthy()),
                T::ClearTamper,
                COMMISSIONING,
                now()
            ),
            Admission::Queue
        );
        // The same silence outside commissioning just queues.
        assert_eq!(
            gatekeeper(&m, Some(&healthy()), T::ClearTamper, PLAIN, now()),
            Admission::Queue
        );
    }

    #[test]
    fn commissioning_after_a_grid_transition_waits_for_first_contact() {
        let ctx = AdmissionContext {
            after_grid_transition: true,
            ..COMMISSIONING
        };
        assert_eq!(
            gatekeeper(
                &meter(P::CalinLorawan, Some(1)),
                Some(&healthy()),
                T::TopUp,
                ctx,
                now()
            ),
            Admission::Defer {
                until: Release::MeterHeard,
                reason: HoldReason::AwaitingFirstContact
            }
        );
    }

    #[test]
    fn commissioning_retry_passes_even_for_a_silent_meter() {
        let ctx = AdmissionContext {
            is_retry: true,
            ..COMMISSIONING
        };
        assert_eq!(
            gatekeeper(
                &meter(P::CalinLorawan, Some(3 * 24 * 60)),
                Some(&healthy()),
                T::TopUp,
                ctx,
                now()
            ),
            Admission::Queue
        );
        // ...but not past a dead grid.
        assert_eq!(
            gatekeeper(
                &meter(P::CalinLorawan, Some(1)),
                Some(&grid(false, &[])),
                T::TopUp,
                ctx,
                now()
            ),
            Admission::Suspend(HoldReason::GridNotEnergised)
        );
    }

    #[test]
    fn unsupported_commands_abort_first() {
        let g = grid(false, &[]);
        assert_eq!(
            gatekeeper(
                &meter(P::CalinLorawan, Some(1)),
                Some(&g),
                T::ReadVersion,
                PLAIN,
                now()
            ),
            Admission::Abort(HoldReason::UnsupportedByProtocol {
                kind: T::ReadVersion,
                protocol: P::CalinLorawan
            })
        );
        assert!(matches!(
            gatekeeper(
                &meter(P::CalinV2, Some(1)),
                Some(&healthy()),
                T::SetTime,
                PLAIN,
                now()
            ),
            Admission::Abort(HoldReason::UnsupportedByProtocol { .. })
        ));
        assert!(matches!(
            gatekeeper(
                &meter(P::CalinLorawan, Some(1)),
                Some(&healthy()),
                T::ReadReport,
                PLAIN,
                now()
            ),
            Admission::Abort(HoldReason::UnsupportedByProtocol { .. })
        ));
    }

    #[test]
    fn v1_firmware_without_power_limit_read_aborts() {
        let mut m = meter(P::CalinV1, Some(1));
        m.firmware_version = Some(V1_FIRMWARE_WITHOUT_POWER_LIMIT_READ.into());
        assert_eq!(
            gatekeeper(&m, Some(&healthy()), T::ReadPowerLimit, PLAIN, now()),
            Admission::Abort(HoldReason::UnsupportedByFirmware {
                kind: T::ReadPowerLimit,
                version: "2F6B4584".into()
            })
        );
        assert_eq!(
            gatekeeper(&m, Some(&healthy()), T::SetPowerLimit, PLAIN, now()),
            Admission::Queue
        );
        m.protocol = P::CalinV2;
        assert_eq!(
            gatekeeper(&m, Some(&healthy()), T::ReadPowerLimit, PLAIN, now()),
            Admission::Queue
        );
    }

    #[test]
    fn unknown_grid_blocks_nothing_but_the_meter_rules_still_apply() {
        assert_eq!(
            gatekeeper(&meter(P::CalinV1, None), None, T::TurnOn, PLAIN, now()),
            Admission::Queue
        );
        assert!(matches!(
            gatekeeper(&meter(P::CalinLorawan, None), None, T::TurnOn, PLAIN, now()),
            Admission::Abort(HoldReason::MeterUnseen { .. })
        ));
    }

    #[test]
    fn thresholds_are_configurable() {
        let policy = GatePolicy {
            lorawan_abort_after: Duration::hours(2),
            ..GatePolicy::default()
        };
        let m = meter(P::CalinLorawan, Some(3 * 60));
        assert!(matches!(
            policy.adjudicate(&m, Some(&healthy()), T::TurnOn, PLAIN, now()),
            Admission::Abort(_)
        ));
        assert_eq!(
            gatekeeper(&m, Some(&healthy()), T::TurnOn, PLAIN, now()),
            Admission::Queue
        );
    }

    #[test]
    fn initial_status_follows_the_admission() {
        use crate::status::InteractionStatus as S;
        assert_eq!(S::initial(&Admission::Queue), S::Queued);
        assert_eq!(
            S::initial(&Admission::Suspend(HoldReason::GridNotEnergised)),
            S::Suspended
        );
        assert_eq!(
            S::initial(&Admission::Abort(HoldReason::MeterUnseen {
                last_seen_at: None
            })),
            S::Aborted
        );
        assert_eq!(
            S::initial(&Admission::Defer {
                until: Release::MeterHeard,
                reason: HoldReason::AwaitingFirstContact
            }),
            S::Deferred
        );
    }

    #[test]
    fn reasons_read_well() {
        assert_eq!(
            HoldReason::GridNotEnergised.to_string(),
            "grid not energised"
        );
        assert_eq!(
            HoldReason::WaitingForInFlight {
                interaction: InteractionId(12)
            }
            .to_string(),
            "waiting for in-flight interaction #12"
        );
        assert_eq!(
            serde_json::to_value(HoldReason::GatewayOffline { dcu_id: DcuId(4) }).unwrap(),
            serde_json::json!({"code": "gateway_offline", "dcu_id": 4})
        );
    }

    #[test]
    fn facts_from_grid_state() {
        let state = GridState {
            grid_id: kernel::GridId(1),
            is_hps_on: false,
            is_hps_on_updated_at: None,
            is_fs_on: false,
            is_fs_on_updated_at: None,
            should_fs_be_on: false,
            should_fs_be_on_updated_at: None,
            all_gateways_online: false,
            gateways: vec![grids::state::GatewayStatus {
                id: DcuId(2),
                external_reference: "gw".into(),
                communication_protocol: P::CalinLorawan,
                is_online: true,
                last_seen_at: None,
            }],
        };
        let facts = GridFacts::of(&state);
        assert!(!facts.is_energised);
        assert!(facts.any_lorawan_gateway_online());
        assert_eq!(facts.gateway_online(DcuId(2)), Some(true));
        assert_eq!(facts.gateway_online(DcuId(9)), None);
    }
}
