//! End-to-end API tests: the whole app in process on a fresh PostgreSQL database per test.

mod auth;
mod commands;
mod connections_meters;
mod customers_agents;
mod delivery;
mod directive_batches;
mod end_to_end;
mod flutterwave;
mod grid_state;
mod grids;
mod infrastructure;
mod installs;
mod interactions_store;
mod keys_audit;
mod ledger;
mod members;
mod operations;
mod orders;
mod organizations;
mod payouts;
mod purchases;
mod repositories;
mod supabase;
mod tokens;
mod webhooks;
mod ws;
