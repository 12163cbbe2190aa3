//! Grids: the mini-grid sites that are the unit of operation. Pure domain: rules and ports.

pub mod connections;
pub mod events;
pub mod gateways;
pub mod meters;
pub mod site;
pub mod state;
pub mod telemetry;
pub mod vocab;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kernel::{
    AccountKind, Currency, DomainError, GridId, MinorUnits, OrganizationId, Page, PageRequest,
    Permission, Principal, TenantScope, Validator,
};
use orgs::AuditDraft;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Grid {
    pub id: GridId,
    pub organization_id: OrganizationId,
    pub name: String,
    /// IANA timezone; schedules fire in grid time.
    pub timezone: String,
    pub currency: Currency,
    /// Essential-service (HPS) tariff in minor units per kWh.
    pub hps_tariff_minor_per_kwh: MinorUnits,
    /// Full-service (FS) tariff in minor units per kWh.
    pub fs_tariff_minor_per_kwh: MinorUnits,
    pub default_hps_connection_fee: MinorUnits,
    pub default_fs_1_phase_connection_fee: MinorUnits,
    pub default_fs_3_phase_connection_fee: MinorUnits,
    /// Installed PV in watts-peak.
    pub pv_capacity_wp: i64,
    /// Installed storage in watt-hours.
    pub storage_capacity_wh: i64,
    pub lifeline_threshold_wh: i64,
    pub lifeline_threshold_days: i32,
    /// Free energy loaded onto a meter at commissioning, in watt-hours.
    pub commissioning_initial_credit_wh: i64,
    pub is_hidden_from_reporting: bool,
    pub is_three_phase_supported: bool,
    pub uses_dual_meter_setup: bool,
    pub is_automatic_meter_install_enabled: bool,
    pub is_automatic_payout_generation_enabled: bool,
    pub is_dcu_connectivity_tracking_enabled: bool,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub deployed_at: Option<DateTime<Utc>>,
    pub commissioned_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Settable grid fields; `None` leaves a field alone, `Some(None)` clears a nullable one.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GridFields {
    pub name: Option<String>,
    pub timezone: Option<String>,
    pub currency: Option<Currency>,
    pub hps_tariff_minor_per_kwh: Option<i64>,
    pub fs_tariff_minor_per_kwh: Option<i64>,
    pub default_hps_connection_fee: Option<i64>,
    pub default_fs_1_phase_connection_fee: Option<i64>,
    pub default_fs_3_phase_connection_fee: Option<i64>,
    pub pv_capacity_wp: Option<i64>,
    pub storage_capacity_wh: Option<i64>,
    pub lifeline_threshold_wh: Option<i64>,
    pub lifeline_threshold_days: Option<i32>,
    pub commissioning_initial_credit_wh: Option<i64>,
    pub is_hidden_from_reporting: Option<bool>,
    pub is_three_phase_supported: Option<bool>,
    pub uses_dual_meter_setup: Option<bool>,
    pub is_automatic_meter_install_enabled: Option<bool>,
    pub is_automatic_payout_generation_enabled: Option<bool>,
    pub is_dcu_connectivity_tracking_enabled: Option<bool>,
    pub latitude: Option<Option<f64>>,
    pub longitude: Option<Option<f64>>,
    pub deployed_at: Option<Option<DateTime<Utc>>>,
    pub commissioned_at: Option<Option<DateTime<Utc>>>,
}

impl GridFields {
    fn validate(&self, creating: bool) -> Result<(), DomainError> {
        let mut v = Validator::new();
        match &self.name {
            Some(n) => {
                v.text("name", n, 200);
            }
            None => {
                v.check(!creating, "name", "is required");
            }
        }
        v.check(
            !creating || self.currency.is_some(),
            "currency",
            "is required",
        );
        if let Some(tz) = &self.timezone {
            v.check(
                tz.parse::<chrono_tz::Tz>().is_ok(),
                "timezone",
                "must be an IANA timezone such as Africa/Lagos",
            );
        }
        for (field, value) in [
            ("hps_tariff_minor_per_kwh", self.hps_tariff_minor_per_kwh),
            ("fs_tariff_minor_per_kwh", self.fs_tariff_minor_per_kwh),
            (
                "default_hps_connection_fee",
                self.default_hps_connection_fee,
            ),
            (
                "default_fs_1_phase_connection_fee",
                self.default_fs_1_phase_connection_fee,
            ),
            (
                "default_fs_3_phase_connection_fee",
                self.default_fs_3_phase_connection_fee,
            ),
            ("pv_capacity_wp", self.pv_capacity_wp),
            ("storage_capacity_wh", self.storage_capacity_wh),
            ("lifeline_threshold_wh", self.lifeline_threshold_wh),
            (
                "commissioning_initial_credit_wh",
                self.commissioning_initial_credit_wh,
            ),
        ] {
            v.non_negative(field, value);
        }
        v.check(
            self.lifeline_threshold_days.is_none_or(|d| d > 0),
            "lifeline_threshold_days",
            "must be positive",
        );
        if let Some(Some(lat)) = self.latitude {
            v.check(
                (-90.0..=90.0).contains(&lat),
                "latitude",
                "must be between -90 and 90",
            );
        }
        if let Some(Some(lon)) = self.longitude {
            v.check(
                (-180.0..=180.0).contains(&lon),
                "longitude",
                "must be between -180 and 180",
            );
        }
        v.finish()
    }

    fn names(&self) -> Vec<&'static str> {
        let set = [
            ("name", self.name.is_some()),
            ("timezone", self.timezone.is_some()),
            ("currency", self.currency.is_some()),
            (
                "hps_tariff_minor_per_kwh",
                self.hps_tariff_minor_per_kwh.is_some(),
            ),
            (
                "fs_tariff_minor_per_kwh",
                self.fs_tariff_minor_per_kwh.is_some(),
            ),
            (
                "default_hps_connection_fee",
                self.default_hps_connection_fee.is_some(),
            ),
            (
                "default_fs_1_phase_connection_fee",
                self.default_fs_1_phase_connection_fee.is_some(),
            ),
            (
                "default_fs_3_phase_connection_fee",
                self.default_fs_3_phase_connection_fee.is_some(),
            ),
            ("pv_capacity_wp", self.pv_capacity_wp.is_some()),
            ("storage_capacity_wh", self.storage_capacity_wh.is_some()),
            (
                "lifeline_threshold_wh",
                self.lifeline_threshold_wh.is_some(),
            ),
            (
                "lifeline_threshold_days",
                self.lifeline_threshold_days.is_some(),
            ),
            (
                "commissioning_initial_credit_wh",
                self.commissioning_initial_credit_wh.is_some(),
            ),
            (
                "is_hidden_from_reporting",
                self.is_hidden_from_reporting.is_some(),
            ),
            (
                "is_three_phase_supported",
                self.is_three_phase_supported.is_some(),
            ),
            (
                "uses_dual_meter_setup",
                self.uses_dual_meter_setup.is_some(),
            ),
            (
                "is_automatic_meter_install_enabled",
                self.is_automatic_meter_install_enabled.is_some(),
            ),
            (
                "is_automatic_payout_generation_enabled",
                self.is_automatic_payout_generation_enabled.is_some(),
            ),
            (
                "is_dcu_connectivity_tracking_enabled",
                self.is_dcu_connectivity_tracking_enabled.is_some(),
            ),
            ("latitude", self.latitude.is_some()),
            ("longitude", self.longitude.is_some()),
            ("deployed_at", self.deployed_at.is_some()),
            ("commissioned_at", self.commissioned_at.is_some()),
        ];
        set.into_iter()
            .filter(|(_, s)| *s)
            .map(|(n, _)| n)
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct GridFilter {
    pub search: Option<String>,
    /// Restricts the list to one grid (agents and customers see only their own).
    pub only: Option<GridId>,
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait GridRepo: Send + Sync {
    async fn list(
        &self,
        scope: TenantScope,
        filter: GridFilter,
        page: PageRequest,
    ) -> Result<Vec<Grid>, DomainError>;
    async fn get(&self, scope: TenantScope, id: GridId) -> Result<Option<Grid>, DomainError>;
    /// `NotFound("organization")` when the organization does not exist; `Conflict` on a duplicate name.
    async fn create(
        &self,
        organization_id: OrganizationId,
        fields: GridFields,
        audit: AuditDraft,
    ) -> Result<Grid, DomainError>;
    async fn update(
        &self,
        scope: TenantScope,
        id: GridId,
        fields: GridFields,
        audit: AuditDraft,
    ) -> Result<Option<Grid>, DomainError>;
    /// Refused with `Conflict` while live customers or agents belong to the grid.
    async fn delete(
        &self,
        scope: TenantScope,
        id: GridId,
        audit: AuditDraft,
    ) -> Result<bool, DomainError>;
}

#[derive(Clone)]
pub struct GridService {
    repo: Arc<dyn GridRepo>,
}

impl GridService {
    pub fn new(repo: Arc<dyn GridRepo>) -> Self {
        Self { repo }
    }

    fn own_grid_only(who: &Principal) -> Option<GridId> {
        match who.kind {
            AccountKind::Member => None,
            AccountKind::Agent | AccountKind::Customer => Some(who.grid_id.unwrap_or(GridId(-1))),
        }
    }

    pub async fn list(
        &self,
        who: &Principal,
        mut filter: GridFilter,
        page: PageRequest,
    ) -> Result<Page<Grid>, DomainError> {
        who.require(Permission::GridRead)?;
        if let Some(own) = Self::own_grid_only(who) {
            filter.only = Some(own);
        }
        let rows = self.repo.list(who.scope(), filter, page).await?;
        Ok(Page::from_rows(rows, page, |g| g.id.get()))
    }

    pub async fn get(&self, who: &Principal, id: GridId) -> Result<Grid, DomainError> {
        who.require(Permission::GridRead)?;
        if Self::own_grid_only(who).is_some_and(|own| own != id) {
            return Err(DomainError::NotFound("grid"));
        }
        self.repo
            .get(who.scope(), id)
            .await?
            .ok_or(DomainError::NotFound("grid"))
    }

    pub async fn create(
        &self,
        who: &Principal,
        organization: Option<OrganizationId>,
        fields: GridFields,
    ) -> Result<Grid, DomainError> {
        who.require(Permission::GridManage)?;
        fields.validate(true)?;
        let org = who.target_org(organization)?;
        let audit = AuditDraft::by(who, "grid.created", json!({"name": fields.name}));
        self.repo.create(org, fields, audit).await
    }

    pub async fn update(
        &self,
        who: &Principal,
        id: GridId,
        fields: GridFields,
    ) -> Result<Grid, DomainError> {
        who.require(Permission::GridManage)?;
        fields.validate(false)?;
        let audit = AuditDraft::by(who, "grid.updated", json!({"fields": fields.names()}));
        self.repo
            .update(who.scope(), id, fields, audit)
            .await?
            .ok_or(DomainError::NotFound("grid"))
    }

    pub async fn delete(&self, who: &Principal, id: GridId) -> Result<(), DomainError> {
        who.require(Permission::GridManage)?;
        let audit = AuditDraft::by(who, "grid.deleted", json!({}));
        if self.repo.delete(who.scope(), id, audit).await? {
            Ok(())
        } else {
            Err(DomainError::NotFound("grid"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kernel::{AccountId, MemberId, PrincipalSource, Role};

    fn who(role: Role, kind: AccountKind, grid: Option<GridId>) -> Principal {
        Principal {
            account_id: Some(AccountId(1)),
            kind,
            organization_id: OrganizationId(1),
            role,
            in_platform_org: false,
            grid_id: grid,
            source: PrincipalSource::Token {
                member: Some(MemberId(1)),
                agent: None,
                customer: None,
            },
        }
    }

    #[tokio::test]
    async fn creation_reports_every_invalid_field() {
        let mut repo = MockGridRepo::new();
        repo.expect_create().never();
        let svc = GridService::new(Arc::new(repo));
        let fields = GridFields {
            name: Some(" ".into()),
            timezone: Some("Mars/Olympus".into()),
            hps_tariff_minor_per_kwh: Some(-1),
            lifeline_threshold_days: Some(0),
            latitude: Some(Some(91.0)),
            ..Default::default()
        };
        match svc
            .create(&who(Role::Manager, AccountKind::Member, None), None, fields)
            .await
            .unwrap_err()
        {
            DomainError::Validation(errs) => {
                let f: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
                assert_eq!(
                    f,
                    [
                        "name",
                        "currency",
                        "timezone",
                        "hps_tariff_minor_per_kwh",
                        "lifeline_threshold_days",
                        "latitude"
                    ]
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn agents_see_only_their_grid() {
        let mut repo = MockGridRepo::new();
        repo.expect_get().never();
        repo.expect_list()
            .withf(|_, f, _| f.only == Some(GridId(4)))
            .returning(|_, _, _| Ok(vec![]));
        let svc = GridService::new(Arc::new(repo));
        let agent = who(Role::Agent, AccountKind::Agent, Some(GridId(4)));
        assert!(matches!(
            svc.get(&agent, GridId(5)).await,
            Err(DomainError::NotFound("grid"))
        ));
        svc.list(&agent, GridFilter::default(), PageRequest::default())
            .await
            .unwrap();
        assert!(matches!(
            svc.create(&agent, None, GridFields::default()).await,
            Err(DomainError::Forbidden(_))
        ));
    }
}
