//! One file per resource.

pub mod agents;
pub mod api_keys;
pub mod audit_events;
pub mod connections;
pub mod customers;
pub mod dcus;
pub mod directive_batches;
pub mod flutterwave;
pub mod grid_state;
pub mod grids;
pub mod health;
pub mod installs;
pub mod integrations;
pub mod interactions;
pub mod me;
pub mod members;
pub mod meters;
pub mod mppts;
pub mod orders;
pub mod organizations;
pub mod payment_credentials;
pub mod payouts;
pub mod poles;
pub mod provider_refunds;
pub mod purchases;
pub mod reconciliation;
pub mod tokens;
pub mod wallets;
pub mod ws;

use actix_web::{HttpResponse, web};
use kernel::{DomainError, Page, PageRequest};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::error::ApiResult;
use crate::state::AppState;

pub type State = web::Data<AppState>;

/// A page of results. Pass `next_cursor` back as `?cursor=` for the next page; `null` ends it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Paged<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> From<Page<T>> for Paged<T> {
    fn from(p: Page<T>) -> Self {
        Paged {
            items: p.items,
            next_cursor: p.next_cursor,
        }
    }
}

pub fn page(limit: Option<i64>, cursor: Option<&str>) -> ApiResult<PageRequest> {
    Ok(PageRequest::new(limit, cursor)?)
}

/// For PATCH bodies: absent → `None` (leave alone), `null` → `Some(None)` (clear).
pub fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Rejects `null` for a field that cannot be cleared.
pub fn required_if_present<T>(field: &str, v: Option<Option<T>>) -> Result<Option<T>, DomainError> {
    match v {
        Some(None) => Err(DomainError::invalid(field, "cannot be null")),
        Some(Some(x)) => Ok(Some(x)),
        None => Ok(None),
    }
}

pub fn created<T: Serialize>(body: T) -> HttpResponse {
    HttpResponse::Created().json(body)
}

pub fn no_content() -> HttpResponse {
    HttpResponse::NoContent().finish()
}
