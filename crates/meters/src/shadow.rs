//! The meter shadow: per attribute, what we want (desired) and what the meter last told us
//! (reported). Drift is the set of attributes where the two differ; the reconciler closes it.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use kernel::{DomainError, MeterId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::InteractionId;
use crate::kind::{Attribute, InteractionType, Origin};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RelayState {
    /// Relay closed: power flows.
    On,
    /// Relay open: supply cut.
    Off,
}

impl RelayState {
    pub fn from_is_on(is_on: bool) -> Self {
        if is_on {
            RelayState::On
        } else {
            RelayState::Off
        }
    }
}

/// The meter's calendar and clock as last read. READ_DATE and READ_TIME each fill their half.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct MeterClock {
    pub date: Option<NaiveDate>,
    pub time: Option<NaiveTime>,
}

impl MeterClock {
    /// `other`'s known halves over ours.
    pub fn merged(self, other: MeterClock) -> MeterClock {
        MeterClock {
            date: other.date.or(self.date),
            time: other.time.or(self.time),
        }
    }
}

/// A value of one attribute, in tiamat's units (watts, watt-hours, volts, amperes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "attribute", content = "value", rename_all = "snake_case")]
pub enum AttributeValue {
    Relay(RelayState),
    /// Watts.
    PowerLimit(i32),
    /// Watt-hours.
    Credit(i64),
    /// Volts (the mean over phases on a three-phase meter).
    Voltage(f64),
    /// Amperes (the mean over phases).
    Current(f64),
    /// Watts (the sum over phases).
    Power(f64),
    FirmwareVersion(String),
    Clock(MeterClock),
    /// A tamper condition is latched.
    Tamper(bool),
}

impl AttributeValue {
    pub fn attribute(&self) -> Attribute {
        match self {
            AttributeValue::Relay(_) => Attribute::Relay,
            AttributeValue::PowerLimit(_) => Attribute::PowerLimit,
            AttributeValue::Credit(_) => Attribute::Credit,
            AttributeValue::Voltage(_) => Attribute::Voltage,
            AttributeValue::Current(_) => Attribute::Current,
            AttributeValue::Power(_) => Attribute::Power,
            AttributeValue::FirmwareVersion(_) => Attribute::FirmwareVersion,
            AttributeValue::Clock(_) => Attribute::Clock,
            AttributeValue::Tamper(_) => Attribute::Tamper,
        }
    }

    /// The command that drives a meter to this value, with its power limit argument.
    /// `None` for attributes no command sets.
    pub fn command(&self) -> Option<(InteractionType, Option<i32>)> {
        match self {
            AttributeValue::Relay(RelayState::On) => Some((InteractionType::TurnOn, None)),
            AttributeValue::Relay(RelayState::Off) => Some((InteractionType::TurnOff, None)),
            AttributeValue::PowerLimit(w) => Some((InteractionType::SetPowerLimit, Some(*w))),
            AttributeValue::Credit(_)
            | AttributeValue::Voltage(_)
            | AttributeValue::Current(_)
            | AttributeValue::Power(_)
            | AttributeValue::FirmwareVersion(_)
            | AttributeValue::Clock(_)
            | AttributeValue::Tamper(_) => None,
        }
    }
}

/// What is wanted for an attribute, by whom and since when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Desired {
    pub value: AttributeValue,
    pub at: DateTime<Utc>,
    pub by: Origin,
    /// The account, batch execution or order behind the intent, when there is one.
    pub by_ref: Option<i64>,
    /// The interaction currently carrying this intent to the meter.
    pub in_flight: Option<InteractionId>,
}

/// Where a reported value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum ReportedVia {
    /// A successful interaction: a read, a confirmed command, or an unsolicited report.
    Interaction(InteractionId),
    /// A machine client's state report.
    External,
    /// The meter's own unsolicited report (the hourly report).
    Report,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Reported {
    pub value: AttributeValue,
    /// When the meter was in this state (the read's or acknowledgement's time).
    pub at: DateTime<Utc>,
    pub via: ReportedVia,
}

/// The reconciler's bookkeeping for one attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct ReconcileMeta {
    /// Corrective commands issued since the intent last changed or was last met.
    pub attempts: u32,
    pub last_reconciled_at: Option<DateTime<Utc>>,
    pub last_interaction: Option<InteractionId>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct AttributeState {
    pub desired: Option<Desired>,
    pub reported: Option<Reported>,
    #[serde(default)]
    pub reconcile: ReconcileMeta,
}

/// An intent to apply to the shadow.
#[derive(Debug, Clone, PartialEq)]
pub struct Intent {
    pub value: AttributeValue,
    pub by: Origin,
    pub by_ref: Option<i64>,
    pub at: DateTime<Utc>,
    /// The interaction created for (or coalesced into) this intent.
    pub interaction: Option<InteractionId>,
}

/// An attribute whose desired value is not what the meter reports.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Drift {
    pub attribute: Attribute,
    pub desired: AttributeValue,
    /// `None`: the meter never reported this attribute.
    pub reported: Option<AttributeValue>,
    pub desired_at: DateTime<Utc>,
    pub in_flight: Option<InteractionId>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShadowError {
    #[error("{0} cannot be commanded; it is only reported")]
    NotControllable(Attribute),
}

impl From<ShadowError> for DomainError {
    fn from(e: ShadowError) -> Self {
        DomainError::invalid("attribute", &e.to_string())
    }
}

/// Desired and reported state of one meter. `version` is bumped on every change and checked by
/// the store on save (optimistic concurrency).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MeterShadow {
    pub meter_id: MeterId,
    pub attributes: BTreeMap<Attribute, AttributeState>,
    pub version: i64,
}

impl MeterShadow {
    pub fn new(meter_id: MeterId) -> Self {
        Self {
            meter_id,
            attributes: BTreeMap::new(),
            version: 0,
        }
    }

    pub fn state(&self, attribute: Attribute) -> Option<&AttributeState> {
        self.attributes.get(&attribute)
    }

    pub fn desired(&self, attribute: Attribute) -> Option<&Desired> {
        self.state(attribute)?.desired.as_ref()
    }

    pub fn reported(&self, attribute: Attribute) -> Option<&Reported> {
        self.state(attribute)?.reported.as_ref()
    }

    /// The reported value, if the meter reported it at or after `since`.
    pub fn reported_since(&self, attribute: Attribute, since: DateTime<Utc>) -> Option<&Reported> {
        self.reported(attribute).filter(|r| r.at >= since)
    }

    fn entry(&mut self, attribute: Attribute) -> &mut AttributeState {
        self.attributes.entry(attribute).or_default()
    }

    /// Records what someone wants. A changed value restarts the reconciler's attempt count.
    pub fn apply_intent(&mut self, intent: Intent) -> Result<(), ShadowError> {
        let attribute = intent.value.attribute();
        if !attribute.is_controllable() {
            return Err(ShadowError::NotControllable(attribute));
        }
        let state = self.entry(attribute);
        let changed = state
            .desired
            .as_ref()
            .is_none_or(|d| d.value != intent.value);
        if changed {
            state.reconcile.attempts = 0;
        }
        state.desired = Some(Desired {
            value: intent.value,
            at: intent.at,
            by: intent.by,
            by_ref: intent.by_ref,
            in_flight: intent.interaction,
        });
        self.version += 1;
        Ok(())
    }

    /// Records a value the meter reported at `at`. An older report never overwrites a newer one
    /// (results can arrive out of order); answers whether it was applied.
    pub fn apply_reading(
        &mut self,
        value: AttributeValue,
        via: ReportedVia,
        at: DateTime<Utc>,
    ) -> bool {
        let attribute = value.attribute();
        let state = self.entry(attribute);
        if state.reported.as_ref().is_some_and(|r| r.at > at) {
            return false;
        }
        let value = match (&state.reported, value) {
            (
                Some(Reported {
                    value: AttributeValue::Clock(old),
                    ..
                }),
                AttributeValue::Clock(new),
            ) => AttributeValue::Clock(old.merged(new)),
            (_, value) => value,
        };
        if state.desired.as_ref().is_some_and(|d| d.value == value) {
            state.reconcile.attempts = 0;
        }
        state.reported = Some(Reported { value, at, via });
        self.version += 1;
        true
    }

    /// A successful interaction: a command's intended value and a read's observations become
    /// reported state, and the interaction is no longer in flight.
    pub fn apply_success(
        &mut self,
        interaction: InteractionId,
        intended: Option<&AttributeValue>,
        observations: &[AttributeValue],
        at: DateTime<Utc>,
    ) {
        let via = ReportedVia::Interaction(interaction);
        if let Some(value) = intended {
            self.apply_reading(value.clone(), via, at);
        }
        for value in observations {
            self.apply_reading(value.clone(), via, at);
        }
        self.interaction_finished(interaction);
    }

    /// The interaction reached a terminal status (or was retired): it no longer carries an
    /// intent.
    pub fn interaction_finished(&mut self, interaction: InteractionId) {
        let mut changed = false;
        for state in self.attributes.values_mut() {
            if let Some(d) = state.desired.as_mut()
                && d.in_flight == Some(interaction)
            {
                d.in_flight = None;
                changed = true;
            }
        }
        if changed {
            self.version += 1;
        }
    }

    /// The reconciler issued `interaction` to close drift on `attribute`.
    pub fn record_reconcile(
        &mut self,
        attribute: Attribute,
        interaction: InteractionId,
        at: DateTime<Utc>,
    ) {
        let state = self.entry(attribute);
        state.reconcile.attempts += 1;
        state.reconcile.last_reconciled_at = Some(at);
        state.reconcile.last_interaction = Some(interaction);
        if let Some(d) = state.desired.as_mut() {
            d.in_flight = Some(interaction);
        }
        self.version += 1;
    }

    /// Attributes whose desired value differs from the reported one (or was never reported).
    pub fn drift(&self) -> Vec<Drift> {
        self.attributes
            .iter()
            .filter_map(|(attribute, state)| {
                let desired = state.desired.as_ref()?;
                let reported = state.reported.as_ref().map(|r| &r.value);
                if reported == Some(&desired.value) {
                    return None;
                }
                Some(Drift {
                    attribute: *attribute,
                    desired: desired.value.clone(),
                    reported: reported.cloned(),
                    desired_at: desired.at,
                    in_flight: desired.in_flight,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn t(min: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap() + Duration::minutes(min)
    }

    fn intent(value: AttributeValue, at: DateTime<Utc>, id: Option<i64>) -> Intent {
        Intent {
            value,
            by: Origin::User,
            by_ref: Some(5),
            at,
            interaction: id.map(InteractionId),
        }
    }

    const OFF: AttributeValue = AttributeValue::Relay(RelayState::Off);
    const ON: AttributeValue = AttributeValue::Relay(RelayState::On);

    #[test]
    fn intent_updates_desired_with_who_when_and_what_is_in_flight() {
        let mut s = MeterShadow::new(MeterId(1));
        s.apply_intent(intent(OFF, t(0), Some(10))).unwrap();
        let d = s.desired(Attribute::Relay).unwrap();
        assert_eq!(d.value, OFF);
        assert_eq!(d.at, t(0));
        assert_eq!(d.by, Origin::User);
        assert_eq!(d.by_ref, Some(5));
        assert_eq!(d.in_flight, Some(InteractionId(10)));
        assert_eq!(s.version, 1);
        assert!(s.reported(Attribute::Relay).is_none());
    }

    #[test]
    fn only_controllable_attributes_take_intents() {
        let mut s = MeterShadow::new(MeterId(1));
        let err = s
            .apply_intent(intent(AttributeValue::Credit(5000), t(0), None))
            .unwrap_err();
        assert_eq!(err, ShadowError::NotControllable(Attribute::Credit));
        assert!(s.attributes.is_empty());
        assert_eq!(s.version, 0);
        let domain: DomainError = err.into();
        assert!(matches!(domain, DomainError::Validation(_)));
    }

    #[test]
    fn drift_lists_attributes_whose_desired_differs_from_reported() {
        let mut s = MeterShadow::new(MeterId(1));
        assert!(s.drift().is_empty());
        s.apply_intent(intent(OFF, t(0), None)).unwrap();
        s.apply_intent(intent(AttributeValue::PowerLimit(500), t(0), None))
            .unwrap();
        // Never reported: both drift.
        let drift = s.drift();
        assert_eq!(drift.len(), 2);
        assert_eq!(drift[0].attribute, Attribute::Relay);
        assert_eq!(drift[0].reported, None);
        assert_eq!(drift[1].attribute, Attribute::PowerLimit);

        s.apply_reading(OFF, ReportedVia::External, t(1));
        s.apply_reading(AttributeValue::PowerLimit(800), ReportedVia::External, t(1));
        // Reported-only attributes never drift.
        s.apply_reading(AttributeValue::Credit(1200), ReportedVia::External, t(1));
        let drift = s.drift();
        assert_eq!(drift.len(), 1);
        assert_eq!(drift[0].attribute, Attribute::PowerLimit);
        assert_eq!(drift[0].desired, AttributeValue::PowerLimit(500));
        assert_eq!(drift[0].reported, Some(AttributeValue::PowerLimit(800)));
        assert_eq!(drift[0].desired_at, t(0));
    }

    #[test]
    fn successful_command_updates_reported_and_clears_in_flight() {
        let mut s = MeterShadow::new(MeterId(1));
        s.apply_intent(intent(OFF, t(0), Some(10))).unwrap();
        s.apply_success(InteractionId(10), Some(&OFF), &[], t(2));
        let r = s.reported(Attribute::Relay).unwrap();
        assert_eq!(r.value, OFF);
        assert_eq!(r.at, t(2));
        assert_eq!(r.via, ReportedVia::Interaction(InteractionId(10)));
        assert_eq!(s.desired(Attribute::Relay).unwrap().in_flight, None);
        assert!(s.drift().is_empty());
    }

    #[test]
    fn successful_read_updates_every_observed_attribute() {
        let mut s = MeterShadow::new(MeterId(1));
        s.apply_success(
            InteractionId(3),
            None,
            &[AttributeValue::Credit(4200), ON],
            t(1),
        );
        assert_eq!(
            s.reported(Attribute::Credit).unwrap().value,
            AttributeValue::Credit(4200)
        );
        assert_eq!(s.reported(Attribute::Relay).unwrap().value, ON);
    }

    #[test]
    fn an_older_reading_never_overwrites_a_newer_one() {
        let mut s = MeterShadow::new(MeterId(1));
        assert!(s.apply_reading(ON, ReportedVia::External, t(5)));
        assert!(!s.apply_reading(OFF, ReportedVia::External, t(4)));
        assert_eq!(s.reported(Attribute::Relay).unwrap().value, ON);
        assert!(s.apply_reading(OFF, ReportedVia::External, t(5)));
        assert_eq!(s.reported(Attribute::Relay).unwrap().value, OFF);
    }

    #[test]
    fn clock_halves_merge() {
        let mut s = MeterShadow::new(MeterId(1));
        let date = NaiveDate::from_ymd_opt(2025, 3, 1).unwrap();
        let time = NaiveTime::from_hms_opt(11, 58, 0).unwrap();
        s.apply_reading(
            AttributeValue::Clock(MeterClock {
                date: Some(date),
                time: None,
            }),
            ReportedVia::External,
            t(0),
        );
        s.apply_reading(
            AttributeValue::Clock(MeterClock {
                date: None,
                time: Some(time),
            }),
            ReportedVia::External,
            t(1),
        );
        assert_eq!(
            s.reported(Attribute::Clock).unwrap().value,
            AttributeValue::Clock(MeterClock {
                date: Some(date),
                time: Some(time)
            })
        );
    }

    #[test]
    fn attempts_restart_when_the_intent_changes_or_is_met() {
        let mut s = MeterShadow::new(MeterId(1));
        s.apply_intent(intent(OFF, t(0), None)).unwrap();
        s.record_reconcile(Attribute::Relay, InteractionId(20), t(15));
        s.record_reconcile(Attribute::Relay, InteractionId(21), t(80));
        assert_eq!(s.state(Attribute::Relay).unwrap().reconcile.attempts, 2);
        assert_eq!(
            s.desired(Attribute::Relay).unwrap().in_flight,
            Some(InteractionId(21))
        );
        // The same intent restated keeps the count.
        s.apply_intent(intent(OFF, t(90), None)).unwrap();
        assert_eq!(s.state(Attribute::Relay).unwrap().reconcile.attempts, 2);
        // Met: back to zero.
        s.apply_reading(OFF, ReportedVia::External, t(91));
        assert_eq!(s.state(Attribute::Relay).unwrap().reconcile.attempts, 0);
        s.record_reconcile(Attribute::Relay, InteractionId(22), t(95));
        // Changed: back to zero.
        s.apply_intent(intent(ON, t(96), None)).unwrap();
        let state = s.state(Attribute::Relay).unwrap();
        assert_eq!(state.reconcile.attempts, 0);
        assert_eq!(state.reconcile.last_interaction, Some(InteractionId(22)));
    }

    #[test]
    fn finishing_an_unrelated_interaction_leaves_in_flight_alone() {
        let mut s = MeterShadow::new(MeterId(1));
        s.apply_intent(intent(OFF, t(0), Some(10))).unwrap();
        let v = s.version;
        s.interaction_finished(InteractionId(11));
        assert_eq!(
            s.desired(Attribute::Relay).unwrap().in_flight,
            Some(InteractionId(10))
        );
        assert_eq!(s.version, v);
        s.interaction_finished(InteractionId(10));
        assert_eq!(s.desired(Attribute::Relay).unwrap().in_flight, None);
        assert_eq!(s.version, v + 1);
    }

    #[test]
    fn values_map_back_to_commands() {
        assert_eq!(ON.command(), Some((InteractionType::TurnOn, None)));
        assert_eq!(OFF.command(), Some((InteractionType::TurnOff, None)));
        assert_eq!(
            AttributeValue::PowerLimit(300).command(),
            Some((InteractionType::SetPowerLimit, Some(300)))
        );
        assert_eq!(AttributeValue::Credit(1).command(), None);
        assert_eq!(RelayState::from_is_on(true), RelayState::On);
    }

    #[test]
    fn shadow_round_trips_through_json() {
        let mut s = MeterShadow::new(MeterId(7));
        s.apply_intent(intent(OFF, t(0), Some(10))).unwrap();
        s.apply_reading(ON, ReportedVia::Interaction(InteractionId(3)), t(1));
        s.apply_reading(AttributeValue::Voltage(229.5), ReportedVia::External, t(1));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(
            json["attributes"]["relay"]["desired"]["value"],
            serde_json::json!({"attribute": "relay", "value": "OFF"})
        );
        assert_eq!(
            json["attributes"]["relay"]["reported"]["via"],
            serde_json::json!({"kind": "interaction", "id": 3})
        );
        let back: MeterShadow = serde_json::from_value(json).unwrap();
        assert_eq!(back, s);
    }
}
