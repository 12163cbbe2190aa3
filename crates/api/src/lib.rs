//! The HTTP adapter: actix-web routes over the domain services, one authentication extractor,
//! one mapping of errors to problem+json, request ids, metrics and the OpenAPI document.

pub mod auth;
pub mod error;
pub mod idempotency;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod routes;
pub mod state;
pub mod ws;

pub use state::{AppState, HealthCheck, HealthReport, Services};

use actix_web::web;

/// Largest JSON body accepted; bigger ones answer 413.
pub const MAX_JSON_BODY: usize = 256 * 1024;

/// Registers every route, extractor configuration and the docs on an actix `App`.
pub fn configure(state: AppState) -> impl FnOnce(&mut web::ServiceConfig) {
    // Install the metrics recorder before the first request records anything.
    metrics::handle();
    move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(web::Data::new(state))
            .app_data(error::json_config())
            .app_data(error::query_config())
            .app_data(error::path_config())
            .service(routes::health::live)
            .service(routes::health::ready)
            .service(routes::health::metrics)
            .service(openapi::docs_redirect)
            .service(openapi::swagger())
            .service(
                web::scope("/api/v1")
                    .service(routes::me::me)
                    .service(routes::ws::ws)
                    .configure(routes::organizations::routes)
                    .configure(routes::members::routes)
                    .configure(routes::agents::routes)
                    .configure(routes::customers::routes)
                    .configure(routes::grid_state::routes)
                    .configure(routes::reconciliation::routes)
                    .configure(routes::grids::routes)
                    .configure(routes::dcus::routes)
                    .configure(routes::mppts::routes)
                    .configure(routes::poles::routes)
                    .configure(routes::connections::routes)
                    .configure(routes::tokens::routes)
                    .configure(routes::installs::routes)
                    .configure(routes::meters::routes)
                    .configure(routes::integrations::routes)
                    .configure(routes::flutterwave::routes)
                    .configure(routes::payment_credentials::routes)
                    .configure(routes::purchases::routes)
                    .configure(routes::payouts::routes)
                    .configure(routes::wallets::routes)
                    .configure(routes::orders::routes)
                    .configure(routes::provider_refunds::routes)
                    .configure(routes::interactions::routes)
                    .configure(routes::directive_batches::routes)
                    .configure(routes::api_keys::routes)
                    .configure(routes::audit_events::routes)
                    .default_service(web::to(error::not_found)),
            )
            .default_service(web::to(error::not_found));
    }
}
