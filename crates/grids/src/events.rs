//! Live events: state changes that dashboards follow over the WebSocket, per grid.

use kernel::GridId;
use serde::{Deserialize, Serialize};

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Meter,
    Dcu,
    Grid,
    MeterInteraction,
    /// A meter credit purchase opened or changed status (payments).
    MeterPurchase,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Operation {
    Create,
    Update,
    Delete,
}

/// One event, as sent to subscribers of `grid_id`:
/// `{"type": "meter", "operation": "UPDATE", "grid_id": 7, "data": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveEvent {
    pub grid_id: GridId,
    #[serde(rename = "type")]
    pub kind: EventKind,
    pub operation: Operation,
    pub data: serde_json::Value,
}
