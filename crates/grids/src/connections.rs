//! A customer's service connection, with the meters asked for at sign-up and their fees.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kernel::{
    ConnectionId, Currency, CustomerId, DomainError, GridId, MinorUnits, OrganizationId, Page,
    PageRequest, Permission, Principal, RequestedMeterId, TenantScope, Validator,
};
use orgs::AuditDraft;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::vocab::{ConnectionSource, DocumentType, MeterPhase, MeterType};

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RequestedMeter {
    pub id: RequestedMeterId,
    pub meter_type: MeterType,
    pub meter_phase: MeterPhase,
    /// Minor units of the connection's currency.
    pub fee: MinorUnits,
}

#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestedMeterInput {
    pub meter_type: MeterType,
    pub meter_phase: MeterPhase,
    /// Minor units of the grid's currency.
    pub fee: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Connection {
    pub id: ConnectionId,
    pub organization_id: OrganizationId,
    pub grid_id: GridId,
    pub customer_id: CustomerId,
    pub upload_uuid: Option<String>,
    pub external_system: ConnectionSource,
    pub document_type: Option<DocumentType>,
    pub document_id: Option<String>,
    /// Connection fees paid so far.
    pub paid: MinorUnits,
    /// The grid's currency.
    pub currency: Currency,
    /// Sum of the requested meters' fees.
    pub total_fee: MinorUnits,
    pub women_impacted: i32,
    pub is_public: bool,
    pub is_commercial: bool,
    pub is_residential: bool,
    pub is_lifeline: Option<bool>,
    pub is_building_wired: bool,
    pub is_using_led_bulbs: bool,
    pub requested_meters: Vec<RequestedMeter>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Settable connection fields (creation takes the customer and requested meters besides).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnectionFields {
    pub external_system: Option<ConnectionSource>,
    pub document_type: Option<Option<DocumentType>>,
    pub document_id: Option<Option<String>>,
    pub women_impacted: Option<i32>,
    pub is_public: Option<bool>,
    pub is_commercial: Option<bool>,
    pub is_residential: Option<bool>,
    pub is_lifeline: Option<Option<bool>>,
    pub is_building_wired: Option<bool>,
    pub is_using_led_bulbs: Option<bool>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewConnection {
    pub customer_id: CustomerId,
    pub upload_uuid: Option<String>,
    pub fields: ConnectionFields,
    pub requested_meters: Vec<RequestedMeterInput>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnectionFilter {
    pub grid_id: Option<GridId>,
    pub customer_id: Option<CustomerId>,
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait ConnectionRepo: Send + Sync {
    async fn list(
        &self,
        scope: TenantScope,
        filter: ConnectionFilter,
        page: PageRequest,
    ) -> Result<Vec<Connection>, DomainError>;
    async fn get(
        &self,
        scope: TenantScope,
        id: ConnectionId,
    ) -> Result<Option<Connection>, DomainError>;
    /// Grid, organization and currency follow the customer; `NotFound("customer")` out of scope;
    /// `Conflict` on a duplicate upload id. Adds the requested fees to the customer's total.
    async fn create(
        &self,
        scope: TenantScope,
        new: NewConnection,
        audit: AuditDraft,
    ) -> Result<Connection, DomainError>;
    async fn update(
        &self,
        scope: TenantScope,
        id: ConnectionId,
        fields: ConnectionFields,
        audit: AuditDraft,
    ) -> Result<Option<Connection>, DomainError>;
    /// Replaces the requested meters and moves the customer's fee total by the difference.
    async fn replace_requested_meters(
        &self,
        scope: TenantScope,
        id: ConnectionId,
        meters: Vec<RequestedMeterInput>,
        audit: AuditDraft,
    ) -> Result<Option<Connection>, DomainError>;
}

fn validate_fields(v: &mut Validator, f: &ConnectionFields) {
    v.check(
        f.women_impacted.is_none_or(|w| w >= 0),
        "women_impacted",
        "must not be negative",
    );
    if let Some(Some(d)) = &f.document_id {
        v.text("document_id", d, 64);
    }
}

fn validate_meters(v: &mut Validator, meters: &[RequestedMeterInput]) {
    v.check(
        meters.len() <= 10,
        "requested_meters",
        "at most 10 meters per connection",
    );
    for (i, m) in meters.iter().enumerate() {
        v.check(
            m.fee >= 0,
            &format!("requested_meters[{i}].fee"),
            "must not be negative",
        );
    }
}

#[derive(Clone)]
pub struct ConnectionService {
    repo: Arc<dyn ConnectionRepo>,
}

impl ConnectionService {
    pub fn new(repo: Arc<dyn ConnectionRepo>) -> Self {
        Self { repo }
    }

    pub async fn list(
        &self,
        who: &Principal,
        filter: ConnectionFilter,
        page: PageRequest,
    ) -> Result<Page<Connection>, DomainError> {
        who.require(Permission::ConnectionRead)?;
        let rows = self.repo.list(who.scope(), filter, page).await?;
        Ok(Page::from_rows(rows, page, |c| c.id.get()))
    }

    pub async fn get(&self, who: &Principal, id: ConnectionId) -> Result<Connection, DomainError> {
        who.require(Permission::ConnectionRead)?;
        self.repo
            .get(who.scope(), id)
            .await?
            .ok_or(DomainError::NotFound("connection"))
    }

    pub async fn create(
        &self,
        who: &Principal,
        new: NewConnection,
    ) -> Result<Connection, DomainError> {
        who.require(Permission::ConnectionManage)?;
        let mut v = Validator::new();
        validate_fields(&mut v, &new.fields);
        validate_meters(&mut v, &new.requested_meters);
        v.optional_text("upload_uuid", new.upload_uuid.as_deref(), 100);
        v.finish()?;
        let audit = AuditDraft::by(
            who,
            "connection.created",
            json!({"customer_id": new.customer_id}),
        );
        self.repo.create(who.scope(), new, audit).await
    }

    pub async fn update(
        &self,
        who: &Principal,
        id: ConnectionId,
        fields: ConnectionFields,
    ) -> Result<Connection, DomainError> {
        who.require(Permission::ConnectionManage)?;
        let mut v = Validator::new();
        validate_fields(&mut v, &fields);
        v.finish()?;
        let audit = AuditDraft::by(who, "connection.updated", json!({}));
        self.repo
            .update(who.scope(), id, fields, audit)
            .await?
            .ok_or(DomainError::NotFound("connection"))
    }

    pub async fn replace_requested_meters(
        &self,
        who: &Principal,
        id: ConnectionId,
        meters: Vec<RequestedMeterInput>,
    ) -> Result<Connection, DomainError> {
        who.require(Permission::ConnectionManage)?;
        let mut v = Validator::new();
        validate_meters(&mut v, &meters);
        v.finish()?;
        let total: i64 = meters.iter().map(|m| m.fee).sum();
        let audit = AuditDraft::by(
            who,
            "connection.requested_meters_replaced",
            json!({"count": meters.len(), "total_fee": total}),
        );
        self.repo
            .replace_requested_meters(who.scope(), id, meters, audit)
            .await?
            .ok_or(DomainError::NotFound("connection"))
    }
}
