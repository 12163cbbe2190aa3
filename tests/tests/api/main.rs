//! End-to-end API tests: the whole app in process on a fresh PostgreSQL database per test.

mod auth;
mod customers_agents;
mod grids;
mod keys_audit;
mod members;
mod operations;
mod organizations;
mod repositories;
mod supabase;
