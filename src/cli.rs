//! Command-line flags: Pingora's own (`-c -t -d -u`), overrides applied on top of the file, and a
//! config-less quick start (`--listen` + `--backend`). Reading the file is `config`'s job.

use crate::config::{Addr, Algorithm, BackendConf, Config, ConfigError, Dur, HashKey};
use crate::config::{ClientConf, HealthCheckConf, Listener, ServerSettings, Upstream};
use clap::{Parser, Subcommand};
use pingora_core::server::configuration::Opt;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where `lb` listens when `--backend` is given without `--listen`.
pub const DEFAULT_QUICK_LISTEN: &str = "127.0.0.1:8080";

const ABOUT: &str = "An HTTP load balancer and reverse proxy on Cloudflare's Pingora.";
const AFTER_HELP: &str = "\
Examples:
  lb -c conf/lb.yaml                      run in the foreground
  lb -t -c conf/lb.yaml                   check a config file and exit (0 = valid)
  lb -d -c conf/lb.yaml                   run as a daemon (returns once serving)
  lb upgrade -c conf/lb.yaml              graceful upgrade of the running daemon to this binary
                                          and config (checked first; no request is dropped)
  lb reload -c conf/lb.yaml               re-read the config in the running lb: pools and routes
                                          change in place (listeners need `lb upgrade`)
  lb probe -c conf/lb.yaml                exit 0 when lb answers on its first listener
  lb --listen 127.0.0.1:8080 --backend 127.0.0.1:9001 --backend 127.0.0.1:9002,weight=2
                                          quick start without a file

Signals: SIGTERM graceful stop, SIGINT fast stop, SIGQUIT hand listeners to `lb -u` and stop,
SIGHUP reload pools and routes in place (as PID 1: SIGHUP reloads, SIGUSR2 upgrades).
Logging: RUST_LOG=debug|info|warn|error (default info), e.g. RUST_LOG=lb=debug,info.";

/// `lb`'s command line.
#[derive(Debug, Clone, Parser)]
#[command(name = "lb", version, about = ABOUT, after_help = AFTER_HELP)]
pub struct Cli {
    /// What to do instead of running: upgrade the running lb, or probe it.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Configuration file (YAML); see conf/lb.yaml for an annotated example.
    #[arg(short = 'c', long = "conf", value_name = "FILE", global = true)]
    pub conf: Option<PathBuf>,

    /// Test the configuration and exit: 0 when valid, 1 with the error otherwise.
    #[arg(short = 't', long)]
    pub test: bool,

    /// Run in the background (daemon); see server.pid_file and server.error_log.
    #[arg(short = 'd', long)]
    pub daemon: bool,

    /// Graceful upgrade: take over the listening sockets of the running lb (which then gets SIGQUIT).
    #[arg(short = 'u', long)]
    pub upgrade: bool,

    /// Use this algorithm in every pool: round_robin (= weighted_round_robin), random, hash,
    /// consistent, least_connections, power_of_two, least_time, sticky, first.
    #[arg(long, value_name = "NAME", value_parser = parse_algorithm, help_heading = "Overrides", global = true)]
    pub algorithm: Option<Algorithm>,

    /// Hash key for hash/consistent in every pool: uri, path, source_ip, header:NAME, cookie:NAME.
    #[arg(long, value_name = "KEY", value_parser = HashKey::parse, help_heading = "Overrides", global = true)]
    pub hash_key: Option<HashKey>,

    /// Cap requests in flight per backend in every pool (max_connections), e.g. for `first`.
    #[arg(long, value_name = "N", help_heading = "Overrides", global = true)]
    pub max_connections: Option<usize>,

    /// Health-check every pool at this interval (e.g. 5s, 500ms), enabling checks where off.
    #[arg(long, value_name = "DURATION", value_parser = Dur::parse, help_heading = "Overrides", global = true)]
    pub health_check_interval: Option<Dur>,

    /// Health-check every pool on this path (e.g. /healthz), enabling checks where off.
    #[arg(long, value_name = "PATH", help_heading = "Overrides", global = true)]
    pub health_check_path: Option<String>,

    /// Quick start: listen here (repeatable; default 127.0.0.1:8080 when --backend is given).
    #[arg(long, value_name = "ADDR", value_parser = Addr::parse, conflicts_with = "conf", help_heading = "Quick start (no config file)", global = true)]
    pub listen: Vec<Addr>,

    /// Quick start: a backend IP:port, optionally with a weight (127.0.0.1:9001,weight=3).
    #[arg(long, value_name = "ADDR[,weight=N]", value_parser = parse_backend, conflicts_with = "conf", help_heading = "Quick start (no config file)", global = true)]
    pub backend: Vec<(Addr, u32)>,
}

/// Subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Gracefully replace the running lb (found through server.pid_file) with a new process of
    /// this binary and configuration: the configuration is checked first, then the new process
    /// takes over the listening sockets and the old one finishes its requests and exits.
    Upgrade {
        /// How long the new process may take to get ready.
        #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = Dur::parse)]
        timeout: Dur,
    },
    /// Re-read the configuration in the running lb and apply pools and routes in place (through
    /// the admin API when configured, else SIGHUP to the pid in server.pid_file). Listener and
    /// server-setting changes need `lb upgrade`; the answer says so.
    Reload,
    /// Exit 0 when lb answers HTTP on its first listener (or ADDR), 1 otherwise: a health
    /// check for containers and service managers.
    Probe {
        /// Address to probe instead of the configuration's first listener.
        #[arg(long, value_name = "ADDR", value_parser = Addr::parse)]
        addr: Option<Addr>,
    },
}

fn parse_algorithm(text: &str) -> Result<Algorithm, String> {
    text.parse()
}

fn parse_backend(text: &str) -> Result<(Addr, u32), String> {
    let (addr, weight) = match text.split_once(',') {
        None => (text, 1),
        Some((addr, opt)) => {
            let w = opt
                .trim()
                .strip_prefix("weight=")
                .and_then(|w| w.parse().ok())
                .ok_or_else(|| format!("{opt:?}: write weight=N after the comma"))?;
            (addr, w)
        }
    };
    Ok((Addr::parse(addr)?, weight))
}

impl Cli {
    /// Where the configuration comes from, for messages: the file or `command line`.
    pub fn source(&self) -> String {
        self.conf
            .as_ref()
            .map_or_else(|| "command line".to_string(), |p| p.display().to_string())
    }

    /// The configuration: the file (or quick-start flags) with overrides applied, validated.
    pub fn config(&self) -> Result<Config, ConfigError> {
        let mut config = match &self.conf {
            Some(path) => Config::parse_file(path)?,
            None => self.quick_start()?,
        };
        self.apply_overrides(&mut config);
        config.validate(&self.source())?;
        Ok(config)
    }

    fn quick_start(&self) -> Result<Config, ConfigError> {
        if self.backend.is_empty() {
            let message = match &self.command {
                Some(Command::Reload) => "lb reload: give -c FILE, the configuration of the running lb",
                Some(Command::Upgrade { .. }) => "lb upgrade: give -c FILE, the configuration to upgrade to",
                Some(Command::Probe { .. }) => "lb probe: give -c FILE (its first listener is probed), or --addr ADDR",
                None => "nothing to run: give -c FILE, or --backend ADDR (see lb --help)",
            };
            return Err(self.flag_error(message.into()));
        }
        let listen = if self.listen.is_empty() {
            vec![Addr::parse(DEFAULT_QUICK_LISTEN).map_err(|m| self.flag_error(m))?]
        } else {
            self.listen.clone()
        };
        let backends = self
            .backend
            .iter()
            .map(|&(address, weight)| BackendConf {
                address,
                weight,
                max_connections: None,
                source: Default::default(),
            })
            .collect();
        let pool = Upstream::new(backends);
        Ok(Config {
            server: ServerSettings::default(),
            listeners: listen.into_iter().map(Listener::plain).collect(),
            upstreams: BTreeMap::from([("default".to_string(), pool)]),
            routes: Vec::new(),
            metrics: None,
            access_log: None,
            admin: None,
            clients: ClientConf::default(),
            trusted_proxies: Vec::new(),
            cluster: None,
            request_id: Default::default(),
            tracing: None,
            rollouts: Vec::new(),
        })
    }

    fn flag_error(&self, message: String) -> ConfigError {
        ConfigError::Invalid {
            file: self.source(),
            path: String::new(),
            message,
        }
    }

    fn apply_overrides(&self, config: &mut Config) {
        if self.daemon {
            config.server.daemon = true;
        }
        for pool in config.upstreams.values_mut() {
            self.override_pool(pool);
        }
    }

    fn override_pool(&self, pool: &mut Upstream) {
        if let Some(algorithm) = self.algorithm {
            pool.algorithm = algorithm;
        }
        if let Some(key) = &self.hash_key {
            pool.hash_key = Some(key.clone());
        }
        if let Some(max) = self.max_connections {
            pool.max_connections = Some(max);
        }
        if self.health_check_interval.is_none() && self.health_check_path.is_none() {
            return;
        }
        let check = pool.health_check.get_or_insert_with(HealthCheckConf::default);
        if let Some(interval) = self.health_check_interval {
            check.interval = interval;
        }
        if let Some(path) = &self.health_check_path {
            check.path = path.clone();
        }
    }

    /// The flags that describe the configuration (file, overrides, quick start), for starting
    /// another `lb` with the same configuration.
    pub fn forward_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        let mut push = |flag: &str, value: String| {
            args.push(flag.to_string());
            args.push(value);
        };
        if let Some(conf) = &self.conf {
            push("--conf", conf.display().to_string());
        }
        if let Some(algorithm) = self.algorithm {
            push("--algorithm", algorithm.name().to_string());
        }
        if let Some(key) = &self.hash_key {
            push("--hash-key", key.to_string());
        }
        if let Some(max) = self.max_connections {
            push("--max-connections", max.to_string());
        }
        if let Some(interval) = self.health_check_interval {
            push("--health-check-interval", interval.to_string());
        }
        if let Some(path) = &self.health_check_path {
            push("--health-check-path", path.clone());
        }
        for addr in &self.listen {
            push("--listen", addr.to_string());
        }
        for (addr, weight) in &self.backend {
            push("--backend", format!("{addr},weight={weight}"));
        }
        args
    }

    /// Pingora's options: daemon and upgrade. The file is ours to read, so `conf` stays empty.
    pub fn pingora_opt(&self) -> Opt {
        Opt {
            upgrade: self.upgrade,
            daemon: self.daemon,
            ..Opt::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("lb").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn quick_start_builds_one_pool() {
        let c = cli(&["--backend", "127.0.0.1:9001", "--backend", "127.0.0.1:9002,weight=3"]);
        let config = c.config().unwrap();
        assert_eq!(config.listeners[0].address.to_string(), DEFAULT_QUICK_LISTEN);
        let pool = &config.upstreams["default"];
        assert_eq!(pool.backends.len(), 2);
        assert_eq!(pool.backends[1].weight, 3);
    }

    #[test]
    fn overrides_reach_every_pool() {
        let c = cli(&[
            "--backend",
            "127.0.0.1:9001",
            "--algorithm",
            "consistent",
            "--hash-key",
            "header:X-U",
            "--health-check-path",
            "/healthz",
            "--health-check-interval",
            "500ms",
        ]);
        let pool = &c.config().unwrap().upstreams["default"];
        assert_eq!(pool.algorithm, Algorithm::Consistent);
        assert_eq!(
            pool.hash_key,
            Some(HashKey::Header(http::HeaderName::from_static("x-u")))
        );
        let hc = pool.health_check.as_ref().unwrap();
        assert_eq!(
            (hc.path.as_str(), hc.interval.to_string()),
            ("/healthz", "500ms".into())
        );
    }

    #[test]
    fn hash_without_key_is_refused() {
        let err = cli(&["--backend", "127.0.0.1:9001", "--algorithm", "hash"])
            .config()
            .unwrap_err();
        assert!(err.to_string().contains("upstreams.default.hash_key"), "{err}");
    }

    #[test]
    fn bad_flags_are_refused_by_the_parser() {
        let parse = |args: &[&str]| Cli::try_parse_from(std::iter::once("lb").chain(args.iter().copied()));
        assert!(parse(&["--algorithm", "fastest"]).is_err());
        assert!(parse(&["--backend", "10.0.0.x:80"]).is_err());
        assert!(parse(&["--backend", "127.0.0.1:80,w=2"]).is_err());
        assert!(parse(&["-c", "x.yaml", "--backend", "127.0.0.1:80"]).is_err());
        assert!(parse(&["--health-check-interval", "5"]).is_err());
    }

    #[test]
    fn forwarded_args_describe_the_same_configuration() {
        let c = cli(&[
            "upgrade",
            "--backend",
            "127.0.0.1:9001,weight=2",
            "--listen",
            "127.0.0.1:81",
            "--algorithm",
            "hash",
            "--hash-key",
            "cookie:sid",
            "--health-check-interval",
            "1500ms",
        ]);
        assert!(matches!(c.command, Some(Command::Upgrade { .. })));
        let again = Cli::try_parse_from(std::iter::once("lb".to_string()).chain(c.forward_args())).unwrap();
        assert_eq!(again.forward_args(), c.forward_args());
        let (a, b) = (c.config().unwrap(), again.config().unwrap());
        assert_eq!(format!("{:?}", a.upstreams), format!("{:?}", b.upstreams));
        assert_eq!(a.listeners[0].address, b.listeners[0].address);
    }

    #[test]
    fn nothing_to_run() {
        let err = cli(&[]).config().unwrap_err();
        assert!(err.to_string().contains("give -c FILE, or --backend ADDR"), "{err}");
        // The subcommands that act on a running lb do not suggest --backend.
        for (args, said) in [
            (
                &["reload"][..],
                "lb reload: give -c FILE, the configuration of the running lb",
            ),
            (
                &["upgrade"][..],
                "lb upgrade: give -c FILE, the configuration to upgrade to",
            ),
            (&["probe"][..], "lb probe: give -c FILE"),
        ] {
            let err = cli(args).config().unwrap_err().to_string();
            assert!(err.contains(said) && !err.contains("--backend"), "{args:?}: {err}");
        }
    }
}
