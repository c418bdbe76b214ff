//! Files the admin listener serves as they are, embedded in the binary at build time: the
//! dashboard (one page, its script and its style, no external request) and the OpenAPI
//! document of the API (`docs/openapi.json` in the repository).

/// The dashboard page.
pub const DASHBOARD_HTML: &str = include_str!("dashboard/index.html");
/// The dashboard's script.
pub const DASHBOARD_JS: &str = include_str!("dashboard/dashboard.js");
/// The dashboard's style.
pub const DASHBOARD_CSS: &str = include_str!("dashboard/dashboard.css");
/// The OpenAPI 3 document of the admin API.
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");

/// Content-Security-Policy of everything served: nothing but this origin, no inline script,
/// no framing.
pub const CSP: &str =
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
