//! Metering gateways: CALIN DCUs and LoRaWAN gateways (`/dcus`).

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kernel::{
    DcuId, DomainError, GridId, OrganizationId, Page, PageRequest, Permission, Principal,
    TenantScope, Validator,
};
use orgs::AuditDraft;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::vocab::{CommunicationProtocol, GatewaySystem};

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Gateway {
    pub id: DcuId,
    pub organization_id: OrganizationId,
    /// `null` while in inventory.
    pub grid_id: Option<GridId>,
    pub external_system: GatewaySystem,
    /// DCU serial, or the ChirpStack gateway id.
    pub external_reference: String,
    pub communication_protocol: CommunicationProtocol,
    pub nickname: Option<String>,
    pub is_online: bool,
    pub is_online_updated_at: Option<DateTime<Utc>>,
    pub last_online_at: Option<DateTime<Utc>>,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub signal_rssi: Option<i32>,
    pub signal_snr: Option<f64>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    /// Live meters using this gateway.
    pub meter_count: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewGateway {
    pub external_system: GatewaySystem,
    pub external_reference: String,
    pub communication_protocol: CommunicationProtocol,
    pub nickname: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct GatewayChanges {
    pub nickname: Option<Option<String>>,
    pub communication_protocol: Option<CommunicationProtocol>,
    pub latitude: Option<Option<f64>>,
    pub longitude: Option<Option<f64>>,
}

/// A machine client's report of a gateway's state.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewayState {
    pub id: DcuId,
    pub is_online: Option<bool>,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub signal_rssi: Option<i32>,
    pub signal_snr: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct GatewayFilter {
    pub grid_id: Option<GridId>,
    pub assigned: Option<bool>,
    pub is_online: Option<bool>,
    pub communication_protocol: Option<CommunicationProtocol>,
    pub search: Option<String>,
}

/// Whether an inventory insert created the gateway or found it already there.
#[derive(Debug, Clone, PartialEq)]
pub struct Inserted<T> {
    pub value: T,
    pub created: bool,
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait GatewayRepo: Send + Sync {
    async fn list(
        &self,
        scope: TenantScope,
        filter: GatewayFilter,
        page: PageRequest,
    ) -> Result<Vec<Gateway>, DomainError>;
    async fn get(&self, scope: TenantScope, id: DcuId) -> Result<Option<Gateway>, DomainError>;
    /// Idempotent on (external system, external reference): the same organization gets the
    /// existing gateway back; another organization's answers `Conflict`.
    async fn insert(
        &self,
        org: OrganizationId,
        new: NewGateway,
        audit: AuditDraft,
    ) -> Result<Inserted<Gateway>, DomainError>;
    async fn update(
        &self,
        scope: TenantScope,
        id: DcuId,
        changes: GatewayChanges,
        audit: AuditDraft,
    ) -> Result<Option<Gateway>, DomainError>;
    /// `NotFound("grid")` for a grid out of scope or of another organization than the gateway's;
    /// `Conflict` while meters on another grid use it.
    async fn assign(
        &self,
        scope: TenantScope,
        id: DcuId,
        grid: GridId,
        audit: AuditDraft,
    ) -> Result<Option<Gateway>, DomainError>;
    /// `Conflict` while meters use it.
    async fn unassign(
        &self,
        scope: TenantScope,
        id: DcuId,
        audit: AuditDraft,
    ) -> Result<Option<Gateway>, DomainError>;
    /// Applies state reports; every id must be in scope (else `NotFound`), all or nothing.
    async fn report_states(
        &self,
        scope: TenantScope,
        states: Vec<GatewayState>,
    ) -> Result<Vec<Gateway>, DomainError>;
}

#[derive(Clone)]
pub struct GatewayService {
    repo: Arc<dyn GatewayRepo>,
}

pub(crate) fn validate_coords(v: &mut Validator, lat: Option<f64>, lon: Option<f64>) {
    if let Some(lat) = lat {
        v.check(
            (-90.0..=90.0).contains(&lat),
            "latitude",
            "must be between -90 and 90",
        );
    }
    if let Some(lon) = lon {
        v.check(
            (-180.0..=180.0).contains(&lon),
            "longitude",
            "must be between -180 and 180",
        );
    }
}

impl GatewayService {
    pub fn new(repo: Arc<dyn GatewayRepo>) -> Self {
        Self { repo }
    }

    pub async fn list(
        &self,
        who: &Principal,
        filter: GatewayFilter,
        page: PageRequest,
    ) -> Result<Page<Gateway>, DomainError> {
        who.require(Permission::InfrastructureRead)?;
        let rows = self.repo.list(who.scope(), filter, page).await?;
        Ok(Page::from_rows(rows, page, |g| g.id.get()))
    }

    pub async fn get(&self, who: &Principal, id: DcuId) -> Result<Gateway, DomainError> {
        who.require(Permission::InfrastructureRead)?;
        self.repo
            .get(who.scope(), id)
            .await?
            .ok_or(DomainError::NotFound("gateway"))
    }

    pub async fn insert(
        &self,
        who: &Principal,
        org: Option<OrganizationId>,
        new: NewGateway,
    ) -> Result<Inserted<Gateway>, DomainError> {
        who.require(Permission::InfrastructureManage)?;
        let mut v = Validator::new();
        v.text("external_reference", &new.external_reference, 64);
        v.optional_text("nickname", new.nickname.as_deref(), 100);
        v.check(
            (new.external_system == GatewaySystem::Chirpstack)
                == (new.communication_protocol == CommunicationProtocol::CalinLorawan),
            "communication_protocol",
            "LoRaWAN gateways are CHIRPSTACK gateways; CALIN DCUs speak CALIN_V1 or CALIN_V2",
        );
        validate_coords(&mut v, new.latitude, new.longitude);
        v.finish()?;
        let org = who.target_org(org)?;
        let audit = AuditDraft::by(
            who,
            "gateway.registered",
            json!({"external_reference": new.external_reference}),
        );
        let new = NewGateway {
            external_reference: new.external_reference.trim().to_owned(),
            ..new
        };
        self.repo.insert(org, new, audit).await
    }

    pub async fn update(
        &self,
        who: &Principal,
        id: DcuId,
        changes: GatewayChanges,
    ) -> Result<Gateway, DomainError> {
        who.require(Permission::InfrastructureManage)?;
        let mut v = Validator::new();
        if let Some(Some(n)) = &changes.nickname {
            v.text("nickname", n, 100);
        }
        validate_coords(
            &mut v,
            changes.latitude.flatten(),
            changes.longitude.flatten(),
        );
        v.finish()?;
        let audit = AuditDraft::by(who, "gateway.updated", json!({}));
        self.repo
            .update(who.scope(), id, changes, audit)
            .await?
            .ok_or(DomainError::NotFound("gateway"))
    }

    pub async fn assign(
        &self,
        who: &Principal,
        id: DcuId,
        grid: GridId,
    ) -> Result<Gateway, DomainError> {
        who.require(Permission::InfrastructureManage)?;
        let audit = AuditDraft::by(who, "gateway.assigned", json!({"grid_id": grid}));
        self.repo
            .assign(who.scope(), id, grid, audit)
            .await?
            .ok_or(DomainError::NotFound("gateway"))
    }

    pub async fn unassign(&self, who: &Principal, id: DcuId) -> Result<Gateway, DomainError> {
        who.require(Permission::InfrastructureManage)?;
        let audit = AuditDraft::by(who, "gateway.unassigned", json!({}));
        self.repo
            .unassign(who.scope(), id, audit)
            .await?
            .ok_or(DomainError::NotFound("gateway"))
    }

    pub async fn report_states(
        &self,
        who: &Principal,
        states: Vec<GatewayState>,
    ) -> Result<Vec<Gateway>, DomainError> {
        who.require(Permission::InfrastructureManage)?;
        let mut v = Validator::new();
        v.check(!states.is_empty(), "states", "must not be empty");
        v.check(
            states.len() <= 1000,
            "states",
            "at most 1000 gateways per request",
        );
        let mut ids: Vec<_> = states.iter().map(|s| s.id).collect();
        ids.sort();
        ids.dedup();
        v.check(
            ids.len() == states.len(),
            "states",
            "each gateway at most once",
        );
        v.finish()?;
        self.repo.report_states(who.scope(), states).await
    }
}
