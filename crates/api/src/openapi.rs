//! The OpenAPI 3 document, generated from the route annotations, and the Swagger UI at `/docs`
//! (its assets are vendored into the binary: nothing is downloaded at build or run time).

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use crate::error::Problem;
use crate::routes;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tiamat",
        description = "Operations API for solar mini-grids. Authenticate with `Authorization: Bearer <JWT>` \
                       (Supabase Auth) or `X-API-Key: <key>`. Errors are application/problem+json. \
                       Lists take `limit` (1-500, default 50) and an opaque `cursor`."
    ),
    security(("bearer" = []), ("api_key" = [])),
    modifiers(&Security),
    paths(
        routes::me::me,
        routes::organizations::list, routes::organizations::create, routes::organizations::get_one,
        routes::organizations::update, routes::organizations::remove,
        routes::members::list, routes::members::invite, routes::members::get_one,
        routes::members::update, routes::members::remove,
        routes::agents::list, routes::agents::create, routes::agents::get_one,
        routes::agents::update, routes::agents::remove,
        routes::customers::list, routes::customers::create, routes::customers::get_one,
        routes::customers::update, routes::customers::remove,
        routes::grids::list, routes::grids::create, routes::grids::get_one,
        routes::grids::update, routes::grids::remove,
        routes::api_keys::list, routes::api_keys::create, routes::api_keys::get_one, routes::api_keys::revoke,
        routes::audit_events::list,
        routes::dcus::list, routes::dcus::register, routes::dcus::report_states, routes::dcus::get_one,
        routes::dcus::update, routes::dcus::assign, routes::dcus::unassign,
        routes::mppts::list, routes::mppts::create, routes::mppts::get_one, routes::mppts::update, routes::mppts::remove,
        routes::poles::list, routes::poles::create, routes::poles::get_one, routes::poles::update, routes::poles::remove,
        routes::connections::list, routes::connections::create, routes::connections::get_one,
        routes::connections::update, routes::connections::replace_requested_meters,
        routes::meters::list, routes::meters::register, routes::meters::report_states, routes::meters::get_one,
        routes::meters::update, routes::meters::assign, routes::meters::unassign,
        routes::grid_state::get_state, routes::grid_state::put_state, routes::grid_state::connectivity,
        routes::grid_state::export,
        routes::integrations::chirpstack_events,
        routes::flutterwave::webhook, routes::flutterwave::organization_webhook,
        routes::flutterwave::pay_into_wallet, routes::flutterwave::verify,
        routes::flutterwave::pay_meter, routes::flutterwave::status, routes::flutterwave::cancel,
        routes::payment_credentials::get_credentials, routes::payment_credentials::put_credentials,
        routes::payment_credentials::delete_credentials,
        routes::interactions::create, routes::interactions::list, routes::interactions::get_one,
        routes::interactions::cancel, routes::interactions::delivery,
        routes::reconciliation::get_mode, routes::reconciliation::set_mode,
        routes::tokens::generate, routes::tokens::offline_clear_tamper, routes::tokens::retry_interaction,
        routes::installs::install, routes::installs::uninstall, routes::installs::list_commissionings,
        routes::installs::get_commissioning, routes::installs::retry_commissioning,
        routes::directive_batches::list, routes::directive_batches::create,
        routes::directive_batches::get_one, routes::directive_batches::update,
        routes::directive_batches::remove, routes::directive_batches::run_now,
        routes::directive_batches::list_executions, routes::directive_batches::get_execution,
        routes::purchases::list, routes::purchases::get_one, routes::purchases::redeliver,
        routes::purchases::refund, routes::purchases::set_meter_tariff,
        routes::payouts::create, routes::payouts::list, routes::payouts::get_one,
        routes::payouts::approve, routes::payouts::pay, routes::payouts::get_terms,
        routes::payouts::put_terms,
        routes::wallets::list, routes::wallets::get_one, routes::wallets::statement,
        routes::wallets::statement_csv,
        routes::orders::create, routes::orders::list, routes::orders::get_one,
        routes::orders::refund, routes::orders::revenue,
        routes::provider_refunds::get_one,
        routes::ws::ws,
        routes::health::live, routes::health::ready, routes::health::metrics,
    ),
    components(schemas(Problem)),
    tags(
        (name = "me"), (name = "organizations"), (name = "members"), (name = "agents"),
        (name = "customers"), (name = "grids"), (name = "api-keys"), (name = "audit"), (name = "gateways"), (name = "mppts"), (name = "poles"),
        (name = "connections"), (name = "meters"), (name = "integrations"), (name = "commands"), (name = "operations"),
        (name = "tokens"), (name = "installs"), (name = "directive-batches"), (name = "payments"),
        (name = "purchases"), (name = "payouts"), (name = "wallets"), (name = "orders"),
    )
)]
pub struct ApiDoc;

/// `/docs/` (Swagger UI) and `/api/v1/openapi.json`.
pub fn swagger() -> SwaggerUi {
    SwaggerUi::new("/docs/{_:.*}").url("/api/v1/openapi.json", ApiDoc::openapi())
}

/// `/docs` without the slash lands on the Swagger UI.
#[actix_web::get("/docs")]
pub async fn docs_redirect() -> actix_web::HttpResponse {
    actix_web::HttpResponse::PermanentRedirect()
        .insert_header(("Location", "/docs/"))
        .finish()
}
