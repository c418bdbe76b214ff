//! The `admin:` section: the admin listener (API, dashboard, metrics), its bearer token and the
//! state file that keeps runtime changes. Serving it is `control::admin`'s job.

use super::Addr;
use serde::Deserialize;

/// The admin listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConf {
    /// `IP:port` of the admin listener, e.g. `127.0.0.1:9900`. Its own listener: never reachable
    /// through the proxy's. An address other than loopback needs a token.
    pub address: Addr,
    /// Bearer token every API call must carry (`Authorization: Bearer TOKEN`). Default: none
    /// (allowed on loopback only).
    #[serde(default)]
    pub token: Option<String>,
    /// Name of an environment variable holding the token instead (e.g. `LB_ADMIN_TOKEN`).
    #[serde(default)]
    pub token_env: Option<String>,
    /// JSON file keeping runtime changes (registrations, weights, drains) across restarts,
    /// upgrades and reloads, written atomically. Default: none (changes last until restart).
    #[serde(default)]
    pub state_file: Option<String>,
}

impl AdminConf {
    /// The token, from `token` or the variable `token_env` names: `Err((field, problem))` when
    /// it is set but unusable.
    pub fn token(&self) -> Result<Option<String>, (&'static str, String)> {
        let token = match (&self.token, &self.token_env) {
            (Some(_), Some(_)) => return Err(("token_env", "set token or token_env, not both".into())),
            (Some(token), None) => token.clone(),
            (None, Some(var)) => {
                std::env::var(var).map_err(|_| ("token_env", format!("the environment variable {var} is not set")))?
            }
            (None, None) => return Ok(None),
        };
        let field = if self.token.is_some() { "token" } else { "token_env" };
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err((
                field,
                "the token must be non-empty printable ASCII without spaces".into(),
            ));
        }
        Ok(Some(token))
    }

    /// Checks what serde cannot: `Err((field, problem))`.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let token = self.token()?;
        if token.is_none() && !self.address.0.ip().is_loopback() {
            let msg = format!(
                "{} is not a loopback address: set token (or token_env), or listen on 127.0.0.1",
                self.address
            );
            return Err(("address", msg));
        }
        if self.state_file.as_deref().is_some_and(|p| p.trim().is_empty()) {
            return Err(("state_file", "must not be empty".into()));
        }
        Ok(())
    }
}
