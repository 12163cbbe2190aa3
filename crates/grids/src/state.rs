//! A grid's live state (energised, full service) and the connectivity of its hardware.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use kernel::{DcuId, DomainError, GridId, Permission, Principal, TenantScope};
use orgs::AuditDraft;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::vocab::CommunicationProtocol;

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct GatewayStatus {
    pub id: DcuId,
    pub external_reference: String,
    pub communication_protocol: CommunicationProtocol,
    pub is_online: bool,
    pub last_seen_at: Option<DateTime<Utc>>,
}

/// The grid's "digital twin": energy state plus which gateways are up.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct GridState {
    pub grid_id: GridId,
    /// Essential service (HPS) is live: the grid is energised.
    pub is_hps_on: bool,
    pub is_hps_on_updated_at: Option<DateTime<Utc>>,
    pub is_fs_on: bool,
    pub is_fs_on_updated_at: Option<DateTime<Utc>>,
    /// Desired full-service state.
    pub should_fs_be_on: bool,
    pub should_fs_be_on_updated_at: Option<DateTime<Utc>>,
    pub all_gateways_online: bool,
    pub gateways: Vec<GatewayStatus>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GridStateChange {
    pub is_hps_on: Option<bool>,
    pub is_fs_on: Option<bool>,
    pub should_fs_be_on: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct MeterConnectivity {
    /// Meters assigned to the grid.
    pub total: i64,
    /// Of those, seen within the window.
    pub seen: i64,
    /// `seen / total`, 0 when there are no meters.
    pub share_seen: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct GatewayConnectivity {
    pub online: Vec<String>,
    pub offline: Vec<String>,
    pub share_online: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Connectivity {
    pub grid_id: GridId,
    pub window_minutes: i64,
    pub meters: MeterConnectivity,
    pub gateways: GatewayConnectivity,
}

/// One line of the connections export: a connection and one of its meters (if any).
#[derive(Debug, Clone, PartialEq)]
pub struct ExportRow {
    pub connection_id: i64,
    pub meter_id: i64,
    pub fields: Vec<String>,
}

pub const EXPORT_HEADER: &[&str] = &[
    "customer_id",
    "customer_name",
    "phone",
    "email",
    "gender",
    "connection_id",
    "upload_uuid",
    "is_commercial",
    "is_residential",
    "is_public",
    "paid_minor",
    "total_fee_minor",
    "currency",
    "meter_serial",
    "meter_type",
    "meter_phase",
    "pole",
    "gateway",
    "last_seen_at",
];

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait GridStateRepo: Send + Sync {
    async fn state(
        &self,
        scope: TenantScope,
        grid: GridId,
    ) -> Result<Option<GridState>, DomainError>;
    /// Sets the flags given (stamping each `_updated_at` when the value changes) and publishes
    /// a `grid` live event.
    async fn change_state(
        &self,
        scope: TenantScope,
        grid: GridId,
        change: GridStateChange,
        audit: AuditDraft,
    ) -> Result<Option<GridState>, DomainError>;
    async fn connectivity(
        &self,
        scope: TenantScope,
        grid: GridId,
        seen_since: DateTime<Utc>,
    ) -> Result<Option<(MeterConnectivity, GatewayConnectivity)>, DomainError>;
    /// Export lines after `(connection_id, meter_id)`, in that order, at most `limit`.
    async fn export_page(
        &self,
        scope: TenantScope,
        grid: GridId,
        after: (i64, i64),
        limit: i64,
    ) -> Result<Vec<ExportRow>, DomainError>;
}

#[derive(Clone)]
pub struct GridStateService {
    repo: Arc<dyn GridStateRepo>,
}

/// Rounds a share to four decimals so it reads well.
pub fn share(part: i64, whole: i64) -> f64 {
    if whole <= 0 {
        return 0.0;
    }
    ((part as f64 / whole as f64) * 10_000.0).round() / 10_000.0
}

impl GridStateService {
    pub fn new(repo: Arc<dyn GridStateRepo>) -> Self {
        Self { repo }
    }

    fn visible(who: &Principal, grid: GridId) -> Result<(), DomainError> {
        match who.kind {
            kernel::AccountKind::Member => Ok(()),
            _ if who.grid_id == Some(grid) => Ok(()),
            _ => Err(DomainError::NotFound("grid")),
        }
    }

    pub async fn state(&self, who: &Principal, grid: GridId) -> Result<GridState, DomainError> {
        who.require(Permission::GridRead)?;
        Self::visible(who, grid)?;
        self.repo
            .state(who.scope(), grid)
            .await?
            .ok_or(DomainError::NotFound("grid"))
    }

    /// Machine clients (the site controller) report energy state here.
    pub async fn change_state(
        &self,
        who: &Principal,
        grid: GridId,
        change: GridStateChange,
    ) -> Result<GridState, DomainError> {
        who.require(Permission::InfrastructureManage)?;
        if change == GridStateChange::default() {
            return Err(DomainError::invalid(
                "body",
                "set at least one of is_hps_on, is_fs_on, should_fs_be_on",
            ));
        }
        let audit = AuditDraft::by(
            who,
            "grid.state_changed",
            json!({
                "is_hps_on": change.is_hps_on, "is_fs_on": change.is_fs_on, "should_fs_be_on": change.should_fs_be_on,
            }),
        );
        self.repo
            .change_state(who.scope(), grid, change, audit)
            .await?
            .ok_or(DomainError::NotFound("grid"))
    }

    pub async fn connectivity(
        &self,
        who: &Principal,
        grid: GridId,
        window_minutes: i64,
    ) -> Result<Connectivity, DomainError> {
        who.require(Permission::InfrastructureRead)?;
        if !(1..=10_080).contains(&window_minutes) {
            return Err(DomainError::invalid(
                "minutes",
                "must be between 1 and 10080 (one week)",
            ));
        }
        let since = Utc::now() - Duration::minutes(window_minutes);
        let (meters, gateways) = self
            .repo
            .connectivity(who.scope(), grid, since)
            .await?
            .ok_or(DomainError::NotFound("grid"))?;
        Ok(Connectivity {
            grid_id: grid,
            window_minutes,
            meters,
            gateways,
        })
    }

    /// Checks access to the grid's export; the rows are then read page by page.
    pub async fn export_allowed(
        &self,
        who: &Principal,
        grid: GridId,
    ) -> Result<TenantScope, DomainError> {
        who.require(Permission::ConnectionRead)?;
        who.require(Permission::CustomerRead)?;
        Self::visible(who, grid)?;
        if who.kind != kernel::AccountKind::Member {
            return Err(DomainError::Forbidden("exports are for staff".into()));
        }
        self.repo
            .state(who.scope(), grid)
            .await?
            .ok_or(DomainError::NotFound("grid"))?;
        Ok(who.scope())
    }

    pub async fn export_page(
        &self,
        scope: TenantScope,
        grid: GridId,
        after: (i64, i64),
        limit: i64,
    ) -> Result<Vec<ExportRow>, DomainError> {
        self.repo.export_page(scope, grid, after, limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::share;

    #[test]
    fn shares_are_real_fractions() {
        assert_eq!(share(3, 4), 0.75);
        assert_eq!(share(1, 3), 0.3333);
        assert_eq!(share(0, 0), 0.0);
        assert_eq!(share(5, 5), 1.0);
    }
}
