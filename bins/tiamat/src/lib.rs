//! tiamat's composition root: configuration → adapters → services → HTTP server.

pub mod app;
pub mod bootstrap;
pub mod config;

pub use app::{App, build};
pub use config::Config;
