//! Files the admin listener serves as they are, embedded in the binary at build time: the
//! dashboard (one page, its scripts and its style, no external request) and the OpenAPI
//! document of the API (`docs/openapi.json` in the repository).

/// The dashboard page.
pub const DASHBOARD_HTML: &str = include_str!("dashboard/index.html");
/// The dashboard's script.
pub const DASHBOARD_JS: &str = include_str!("dashboard/dashboard.js");
/// The script of the dashboard's Rollouts card.
pub const ROLLOUTS_JS: &str = include_str!("dashboard/rollouts.js");
/// The dashboard's style.
pub const DASHBOARD_CSS: &str = include_str!("dashboard/dashboard.css");
/// The dashboard's icon.
pub const FAVICON: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 16 16\"><rect width=\"16\" height=\"16\" rx=\"3\" fill=\"#1d232b\"/><path d=\"M4 3v10h8\" stroke=\"#fff\" stroke-width=\"2\" fill=\"none\"/></svg>";
/// The OpenAPI 3 document of the admin API.
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");

/// Content-Security-Policy of everything served: nothing but this origin, no inline script,
/// no framing.
pub const CSP: &str =
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
