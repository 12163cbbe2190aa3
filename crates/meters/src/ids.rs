//! Ids owned by the command pipeline. They follow the kernel's pattern: a transparent `i64`
//! newtype per table, so an interaction id can never be passed where a batch id is expected.

use serde::{Deserialize, Serialize};

macro_rules! pipeline_id {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(transparent)]
        #[schema(value_type = i64)]
        pub struct $name(pub i64);

        impl $name {
            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<i64> for $name {
            fn from(v: i64) -> Self {
                Self(v)
            }
        }
    )*};
}

pipeline_id!(
    /// One logical command to one meter (`meter_interactions`).
    InteractionId,
    /// One firing of a scheduled batch rule (`directive_batch_executions`).
    BatchExecutionId,
    /// One commissioning run of a meter (`meter_commissionings`).
    CommissioningId,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_transparent_numbers() {
        assert_eq!(serde_json::to_string(&InteractionId(42)).unwrap(), "42");
        let id: BatchExecutionId = serde_json::from_str("7").unwrap();
        assert_eq!(id, BatchExecutionId::from(7));
        assert_eq!(CommissioningId(3).to_string(), "3");
        assert_eq!(InteractionId(9).get(), 9);
    }
}
