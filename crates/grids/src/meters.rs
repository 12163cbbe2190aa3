//! Meter inventory and placement. The command pipeline adds shadows and commands on top.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kernel::{
    ConnectionId, CustomerId, DcuId, DomainError, GridId, MeterId, OrganizationId, Page,
    PageRequest, Permission, PoleId, Principal, TenantScope, Validator,
};
use orgs::AuditDraft;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::gateways::Inserted;
use crate::vocab::{CommunicationProtocol, MeterPhase, MeterSystem, MeterType};

/// What the meter last reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema, Default)]
pub struct ObservedState {
    /// Relay closed (power flowing).
    pub is_on: Option<bool>,
    /// Remaining credit in watt-hours.
    pub credit_wh: Option<i64>,
    pub power_w: Option<f64>,
    pub voltage_v: Option<f64>,
    pub power_limit_w: Option<i32>,
    pub signal_rssi: Option<i32>,
    pub signal_snr: Option<f64>,
    pub last_seen_at: Option<DateTime<Utc>>,
    /// When this state was recorded.
    pub observed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Meter {
    pub id: MeterId,
    pub organization_id: OrganizationId,
    pub external_system: MeterSystem,
    /// The serial number, unique per vendor system.
    pub external_reference: String,
    /// The LoRaWAN DevEUI the network server knows the meter by (lower-case hex).
    pub lorawan_dev_eui: Option<String>,
    /// An STS decoder key is on file (the key itself is never shown).
    pub has_decoder_key: bool,
    pub communication_protocol: CommunicationProtocol,
    pub meter_type: MeterType,
    pub meter_phase: MeterPhase,
    pub version: Option<String>,
    pub nickname: Option<String>,
    pub is_cabin_meter: bool,
    /// Power limit (W) applied while full service is off.
    pub hps_mode_power_limit_w: i32,
    /// Placement; all `null` while in inventory.
    pub grid_id: Option<GridId>,
    pub connection_id: Option<ConnectionId>,
    pub customer_id: Option<CustomerId>,
    pub customer_name: Option<String>,
    pub pole_id: Option<PoleId>,
    pub dcu_id: Option<DcuId>,
    pub assigned_at: Option<DateTime<Utc>>,
    /// When its latest commissioning succeeded; `null` while uncommissioned (batches and the
    /// reconciler act only on commissioned meters).
    pub commissioned_at: Option<DateTime<Utc>>,
    /// Driven by hand: batches and the reconciler leave it alone.
    pub manual_mode: bool,
    pub observed: ObservedState,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewMeter {
    pub external_system: MeterSystem,
    pub external_reference: String,
    pub lorawan_dev_eui: Option<String>,
    /// STS decoder key (write-only).
    pub decoder_key: Option<String>,
    pub communication_protocol: CommunicationProtocol,
    pub meter_type: MeterType,
    pub meter_phase: MeterPhase,
    pub version: Option<String>,
    pub nickname: Option<String>,
    pub is_cabin_meter: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct MeterChanges {
    pub lorawan_dev_eui: Option<Option<String>>,
    pub decoder_key: Option<Option<String>>,
    pub meter_type: Option<MeterType>,
    pub meter_phase: Option<MeterPhase>,
    pub communication_protocol: Option<CommunicationProtocol>,
    pub version: Option<Option<String>>,
    pub nickname: Option<Option<String>>,
    pub is_cabin_meter: Option<bool>,
    pub hps_mode_power_limit_w: Option<i32>,
    pub manual_mode: Option<bool>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub connection_id: ConnectionId,
    pub pole_id: Option<PoleId>,
}

/// A machine client's report of a meter's state; fields left out stay as they were.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MeterStateReport {
    pub id: MeterId,
    pub is_on: Option<bool>,
    pub credit_wh: Option<i64>,
    pub power_w: Option<f64>,
    pub voltage_v: Option<f64>,
    pub power_limit_w: Option<i32>,
    pub signal_rssi: Option<i32>,
    pub signal_snr: Option<f64>,
    pub last_seen_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct MeterFilter {
    pub grid_id: Option<GridId>,
    pub connection_id: Option<ConnectionId>,
    pub customer_id: Option<CustomerId>,
    pub dcu_id: Option<DcuId>,
    pub meter_type: Option<MeterType>,
    pub meter_phase: Option<MeterPhase>,
    pub communication_protocol: Option<CommunicationProtocol>,
    pub assigned: Option<bool>,
    /// `Some(true)`: seen since this instant; `Some(false)`: not seen since it.
    pub seen_since: Option<(bool, DateTime<Utc>)>,
    /// Serial, or the customer's name or phone.
    pub search: Option<String>,
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait MeterRepo: Send + Sync {
    async fn list(
        &self,
        scope: TenantScope,
        filter: MeterFilter,
        page: PageRequest,
    ) -> Result<Vec<Meter>, DomainError>;
    async fn get(&self, scope: TenantScope, id: MeterId) -> Result<Option<Meter>, DomainError>;
    /// Idempotent on (vendor system, serial) within an organization; another organization's
    /// serial answers `Conflict`.
    async fn insert(
        &self,
        org: OrganizationId,
        new: NewMeter,
        audit: AuditDraft,
    ) -> Result<Inserted<Meter>, DomainError>;
    /// Type, phase and protocol change only while the meter is in inventory (`Conflict` otherwise).
    async fn update(
        &self,
        scope: TenantScope,
        id: MeterId,
        changes: MeterChanges,
        audit: AuditDraft,
    ) -> Result<Option<Meter>, DomainError>;
    /// Places the meter on a connection (and pole); the gateway is chosen from the grid:
    /// `Conflict` when the meter is assigned already, the connection has a meter of this type, or
    /// no gateway of the meter's protocol has room.
    async fn assign(
        &self,
        scope: TenantScope,
        id: MeterId,
        assignment: Assignment,
        audit: AuditDraft,
    ) -> Result<Option<Meter>, DomainError>;
    /// Back to inventory: connection, pole, gateway and grid are cleared.
    async fn unassign(
        &self,
        scope: TenantScope,
        id: MeterId,
        audit: AuditDraft,
    ) -> Result<Option<Meter>, DomainError>;
    /// All or nothing; every id must be in scope.
    async fn report_states(
        &self,
        scope: TenantScope,
        reports: Vec<MeterStateReport>,
    ) -> Result<Vec<Meter>, DomainError>;
}

fn check_decoder_key(v: &mut Validator, key: Option<&str>) {
    if let Some(k) = key {
        v.check(
            (1..=64).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_alphanumeric()),
            "decoder_key",
            "must be 1 to 64 letters or digits",
        );
    }
}

/// A DevEUI is 16 hex digits; stored lower-case as ChirpStack v4 sends it.
fn check_dev_eui(v: &mut Validator, eui: Option<&str>) {
    if let Some(e) = eui {
        v.check(
            e.len() == 16 && e.bytes().all(|b| b.is_ascii_hexdigit()),
            "lorawan_dev_eui",
            "must be 16 hexadecimal digits",
        );
    }
}

#[derive(Clone)]
pub struct MeterService {
    repo: Arc<dyn MeterRepo>,
}

impl MeterService {
    pub fn new(repo: Arc<dyn MeterRepo>) -> Self {
        Self { repo }
    }

    pub async fn list(
        &self,
        who: &Principal,
        filter: MeterFilter,
        page: PageRequest,
    ) -> Result<Page<Meter>, DomainError> {
        who.require(Permission::MeterRead)?;
        let mut filter = filter;
        match who.kind {
            kernel::AccountKind::Member => {}
            kernel::AccountKind::Agent => filter.grid_id = Some(who.grid_id.unwrap_or(GridId(-1))),
            kernel::AccountKind::Customer => {
                filter.customer_id = Some(who.customer_id().unwrap_or(CustomerId(-1)))
            }
        }
        let rows = self.repo.list(who.scope(), filter, page).await?;
        Ok(Page::from_rows(rows, page, |m| m.id.get()))
    }

    pub async fn get(&self, who: &Principal, id: MeterId) -> Result<Meter, DomainError> {
        who.require(Permission::MeterRead)?;
        let m = self
            .repo
            .get(who.scope(), id)
            .await?
            .ok_or(DomainError::NotFound("meter"))?;
        let visible = match who.kind {
            kernel::AccountKind::Member => true,
            kernel::AccountKind::Agent => m.grid_id.is_some() && m.grid_id == who.grid_id,
            kernel::AccountKind::Customer => {
                m.customer_id.is_some() && m.customer_id == who.customer_id()
            }
        };
        if visible {
            Ok(m)
        } else {
            Err(DomainError::NotFound("meter"))
        }
    }

    pub async fn insert(
        &self,
        who: &Principal,
        org: Option<OrganizationId>,
        new: NewMeter,
    ) -> Result<Inserted<Meter>, DomainError> {
        who.require(Permission::MeterManage)?;
        let mut v = Validator::new();
        v.text("external_reference", &new.external_reference, 64);
        v.optional_text("version", new.version.as_deref(), 64);
        v.optional_text("nickname", new.nickname.as_deref(), 100);
        check_dev_eui(&mut v, new.lorawan_dev_eui.as_deref());
        check_decoder_key(&mut v, new.decoder_key.as_deref());
        v.finish()?;
        let org = who.target_org(org)?;
        let new = NewMeter {
            external_reference: new.external_reference.trim().to_owned(),
            lorawan_dev_eui: new.lorawan_dev_eui.map(|e| e.to_lowercase()),
            ..new
        };
        let audit = AuditDraft::by(
            who,
            "meter.registered",
            json!({"external_reference": new.external_reference}),
        );
        self.repo.insert(org, new, audit).await
    }

    pub async fn update(
        &self,
        who: &Principal,
        id: MeterId,
        changes: MeterChanges,
    ) -> Result<Meter, DomainError> {
        who.require(Permission::MeterManage)?;
        let mut v = Validator::new();
        v.check(
            changes.hps_mode_power_limit_w.is_none_or(|w| w >= 0),
            "hps_mode_power_limit_w",
            "must not be negative",
        );
        if let Some(Some(n)) = &changes.nickname {
            v.text("nickname", n, 100);
        }
        check_dev_eui(
            &mut v,
            changes.lorawan_dev_eui.as_ref().and_then(|e| e.as_deref()),
        );
        check_decoder_key(
            &mut v,
            changes.decoder_key.as_ref().and_then(|e| e.as_deref()),
        );
        v.finish()?;
        let changes = MeterChanges {
            lorawan_dev_eui: changes.lorawan_dev_eui.map(|e| e.map(|e| e.to_lowercase())),
            ..changes
        };
        // Taking a meter into or out of manual mode changes what automation does to it.
        let details = match changes.manual_mode {
            Some(manual_mode) => json!({ "manual_mode": manual_mode }),
            None => json!({}),
        };
        let audit = AuditDraft::by(who, "meter.updated", details);
        self.repo
            .update(who.scope(), id, changes, audit)
            .await?
            .ok_or(DomainError::NotFound("meter"))
    }

    pub async fn assign(
        &self,
        who: &Principal,
        id: MeterId,
        assignment: Assignment,
    ) -> Result<Meter, DomainError> {
        who.require(Permission::MeterManage)?;
        let audit = AuditDraft::by(
            who,
            "meter.assigned",
            json!({"connection_id": assignment.connection_id, "pole_id": assignment.pole_id}),
        );
        self.repo
            .assign(who.scope(), id, assignment, audit)
            .await?
            .ok_or(DomainError::NotFound("meter"))
    }

    pub async fn unassign(&self, who: &Principal, id: MeterId) -> Result<Meter, DomainError> {
        who.require(Permission::MeterManage)?;
        let audit = AuditDraft::by(who, "meter.unassigned", json!({}));
        self.repo
            .unassign(who.scope(), id, audit)
            .await?
            .ok_or(DomainError::NotFound("meter"))
    }

    pub async fn report_states(
        &self,
        who: &Principal,
        reports: Vec<MeterStateReport>,
    ) -> Result<Vec<Meter>, DomainError> {
        who.require(Permission::MeterManage)?;
        let mut v = Validator::new();
        v.check(!reports.is_empty(), "states", "must not be empty");
        v.check(
            reports.len() <= 1000,
            "states",
            "at most 1000 meters per request",
        );
        let mut ids: Vec<_> = reports.iter().map(|r| r.id).collect();
        ids.sort();
        ids.dedup();
        v.check(
            ids.len() == reports.len(),
            "states",
            "each meter at most once",
        );
        for (i, r) in reports.iter().enumerate() {
            v.check(
                r.credit_wh.is_none_or(|c| c >= 0),
                &format!("states[{i}].credit_wh"),
                "must not be negative",
            );
        }
        v.finish()?;
        self.repo.report_states(who.scope(), reports).await
    }
}
