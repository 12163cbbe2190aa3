//! The shared vocabulary of tiamat's domain crates. Nothing here does I/O.

pub mod access;
pub mod error;
pub mod ids;
pub mod money;
pub mod page;

pub use access::{AccountKind, Permission, Principal, PrincipalSource, Role, TenantScope};
pub use error::{DomainError, FieldError, Validator};
pub use ids::*;
pub use money::{Currency, MinorUnits};
pub use page::{Cursor, Page, PageRequest};
