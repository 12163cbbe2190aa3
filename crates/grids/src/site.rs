//! Per-grid site equipment: MPPTs (charge controllers, PV inverters) and poles.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kernel::{
    DomainError, GridId, MpptId, OrganizationId, Page, PageRequest, Permission, PoleId, Principal,
    TenantScope, Validator,
};
use orgs::AuditDraft;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::gateways::validate_coords as check_coordinates;
use crate::vocab::{MpptSystem, MpptType};

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Mppt {
    pub id: MpptId,
    pub organization_id: OrganizationId,
    pub grid_id: GridId,
    pub external_system: MpptSystem,
    /// The operator's label, unique per grid.
    pub external_reference: String,
    /// The vendor's device id (e.g. the Victron VRM instance).
    pub external_id: String,
    pub mppt_type: MpptType,
    /// Rated power in watts.
    pub capacity_w: i64,
    pub azimuth_deg: Option<f64>,
    pub tilt_deg: Option<f64>,
    pub installed_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct MpptFields {
    pub external_system: Option<MpptSystem>,
    pub external_reference: Option<String>,
    pub external_id: Option<String>,
    pub mppt_type: Option<MpptType>,
    pub capacity_w: Option<i64>,
    pub azimuth_deg: Option<Option<f64>>,
    pub tilt_deg: Option<Option<f64>>,
    pub installed_at: Option<DateTime<Utc>>,
}

impl MpptFields {
    fn validate(&self, creating: bool) -> Result<(), DomainError> {
        let mut v = Validator::new();
        for (field, value) in [
            ("external_reference", &self.external_reference),
            ("external_id", &self.external_id),
        ] {
            match value {
                Some(t) => {
                    v.text(field, t, 64);
                }
                None => {
                    v.check(!creating, field, "is required");
                }
            }
        }
        v.check(
            !creating || self.installed_at.is_some(),
            "installed_at",
            "is required",
        );
        v.non_negative("capacity_w", self.capacity_w);
        if let Some(Some(a)) = self.azimuth_deg {
            v.check(
                (0.0..360.0).contains(&a),
                "azimuth_deg",
                "must be from 0 to below 360",
            );
        }
        if let Some(Some(t)) = self.tilt_deg {
            v.check(
                (0.0..=90.0).contains(&t),
                "tilt_deg",
                "must be between 0 and 90",
            );
        }
        v.finish()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Pole {
    pub id: PoleId,
    pub organization_id: OrganizationId,
    pub grid_id: GridId,
    /// Short label painted on the pole, unique per grid.
    pub external_reference: String,
    pub nickname: Option<String>,
    pub is_virtual: bool,
    pub latitude: f64,
    pub longitude: f64,
    pub location_accuracy_m: Option<f64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct PoleFields {
    pub external_reference: Option<String>,
    pub nickname: Option<Option<String>>,
    pub is_virtual: Option<bool>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub location_accuracy_m: Option<Option<f64>>,
}

impl PoleFields {
    fn validate(&self, creating: bool) -> Result<(), DomainError> {
        let mut v = Validator::new();
        match &self.external_reference {
            Some(r) => {
                v.text("external_reference", r, 10);
            }
            None => {
                v.check(!creating, "external_reference", "is required");
            }
        }
        v.check(
            !creating || self.latitude.is_some(),
            "latitude",
            "is required",
        );
        v.check(
            !creating || self.longitude.is_some(),
            "longitude",
            "is required",
        );
        check_coordinates(&mut v, self.latitude, self.longitude);
        if let Some(Some(a)) = self.location_accuracy_m {
            v.check(a >= 0.0, "location_accuracy_m", "must not be negative");
        }
        if let Some(Some(n)) = &self.nickname {
            v.text("nickname", n, 100);
        }
        v.finish()
    }
}

/// Filters for per-grid equipment lists.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SiteFilter {
    pub grid_id: Option<GridId>,
    pub search: Option<String>,
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait MpptRepo: Send + Sync {
    async fn list(
        &self,
        scope: TenantScope,
        filter: SiteFilter,
        page: PageRequest,
    ) -> Result<Vec<Mppt>, DomainError>;
    async fn get(&self, scope: TenantScope, id: MpptId) -> Result<Option<Mppt>, DomainError>;
    /// The MPPT's organization is its grid's; `NotFound("grid")` when the grid is out of scope.
    async fn create(
        &self,
        scope: TenantScope,
        grid: GridId,
        fields: MpptFields,
        audit: AuditDraft,
    ) -> Result<Mppt, DomainError>;
    async fn update(
        &self,
        scope: TenantScope,
        id: MpptId,
        fields: MpptFields,
        audit: AuditDraft,
    ) -> Result<Option<Mppt>, DomainError>;
    async fn delete(
        &self,
        scope: TenantScope,
        id: MpptId,
        audit: AuditDraft,
    ) -> Result<bool, DomainError>;
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait PoleRepo: Send + Sync {
    async fn list(
        &self,
        scope: TenantScope,
        filter: SiteFilter,
        page: PageRequest,
    ) -> Result<Vec<Pole>, DomainError>;
    async fn get(&self, scope: TenantScope, id: PoleId) -> Result<Option<Pole>, DomainError>;
    async fn create(
        &self,
        scope: TenantScope,
        grid: GridId,
        fields: PoleFields,
        audit: AuditDraft,
    ) -> Result<Pole, DomainError>;
    async fn update(
        &self,
        scope: TenantScope,
        id: PoleId,
        fields: PoleFields,
        audit: AuditDraft,
    ) -> Result<Option<Pole>, DomainError>;
    /// `Conflict` while meters hang on the pole.
    async fn delete(
        &self,
        scope: TenantScope,
        id: PoleId,
        audit: AuditDraft,
    ) -> Result<bool, DomainError>;
}

#[derive(Clone)]
pub struct MpptService {
    repo: Arc<dyn MpptRepo>,
}

impl MpptService {
    pub fn new(repo: Arc<dyn MpptRepo>) -> Self {
        Self { repo }
    }

    pub async fn list(
        &self,
        who: &Principal,
        filter: SiteFilter,
        page: PageRequest,
    ) -> Result<Page<Mppt>, DomainError> {
        who.require(Permission::InfrastructureRead)?;
        let rows = self.repo.list(who.scope(), filter, page).await?;
        Ok(Page::from_rows(rows, page, |m| m.id.get()))
    }

    pub async fn get(&self, who: &Principal, id: MpptId) -> Result<Mppt, DomainError> {
        who.require(Permission::InfrastructureRead)?;
        self.repo
            .get(who.scope(), id)
            .await?
            .ok_or(DomainError::NotFound("mppt"))
    }

    pub async fn create(
        &self,
        who: &Principal,
        grid: GridId,
        fields: MpptFields,
    ) -> Result<Mppt, DomainError> {
        who.require(Permission::InfrastructureManage)?;
        fields.validate(true)?;
        let audit = AuditDraft::by(who, "mppt.created", json!({"grid_id": grid}));
        self.repo.create(who.scope(), grid, fields, audit).await
    }

    pub async fn update(
        &self,
        who: &Principal,
        id: MpptId,
        fields: MpptFields,
    ) -> Result<Mppt, DomainError> {
        who.require(Permission::InfrastructureManage)?;
        fields.validate(false)?;
        let audit = AuditDraft::by(who, "mppt.updated", json!({}));
        self.repo
            .update(who.scope(), id, fields, audit)
            .await?
            .ok_or(DomainError::NotFound("mppt"))
    }

    pub async fn delete(&self, who: &Principal, id: MpptId) -> Result<(), DomainError> {
        who.require(Permission::InfrastructureManage)?;
        let audit = AuditDraft::by(who, "mppt.deleted", json!({}));
        if self.repo.delete(who.scope(), id, audit).await? {
            Ok(())
        } else {
            Err(DomainError::NotFound("mppt"))
        }
    }
}

#[derive(Clone)]
pub struct PoleService {
    repo: Arc<dyn PoleRepo>,
}

impl PoleService {
    pub fn new(repo: Arc<dyn PoleRepo>) -> Self {
        Self { repo }
    }

    pub async fn list(
        &self,
        who: &Principal,
        filter: SiteFilter,
        page: PageRequest,
    ) -> Result<Page<Pole>, DomainError> {
        who.require(Permission::InfrastructureRead)?;
        let rows = self.repo.list(who.scope(), filter, page).await?;
        Ok(Page::from_rows(rows, page, |p| p.id.get()))
    }

    pub async fn get(&self, who: &Principal, id: PoleId) -> Result<Pole, DomainError> {
        who.require(Permission::InfrastructureRead)?;
        self.repo
            .get(who.scope(), id)
            .await?
            .ok_or(DomainError::NotFound("pole"))
    }

    pub async fn create(
        &self,
        who: &Principal,
        grid: GridId,
        fields: PoleFields,
    ) -> Result<Pole, DomainError> {
        who.require(Permission::InfrastructureManage)?;
        fields.validate(true)?;
        let audit = AuditDraft::by(who, "pole.created", json!({"grid_id": grid}));
        self.repo.create(who.scope(), grid, fields, audit).await
    }

    pub async fn update(
        &self,
        who: &Principal,
        id: PoleId,
        fields: PoleFields,
    ) -> Result<Pole, DomainError> {
        who.require(Permission::InfrastructureManage)?;
        fields.validate(false)?;
        let audit = AuditDraft::by(who, "pole.updated", json!({}));
        self.repo
            .update(who.scope(), id, fields, audit)
            .await?
            .ok_or(DomainError::NotFound("pole"))
    }

    pub async fn delete(&self, who: &Principal, id: PoleId) -> Result<(), DomainError> {
        who.require(Permission::InfrastructureManage)?;
        let audit = AuditDraft::by(who, "pole.deleted", json!({}));
        if self.repo.delete(who.scope(), id, audit).await? {
            Ok(())
        } else {
            Err(DomainError::NotFound("pole"))
        }
    }
}
