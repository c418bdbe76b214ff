//! A single-node etcd (Debian's `etcd-server`) on two loopback ports for the tests of lb's
//! `cluster:`, killed on drop.

use super::client::get;
use super::{eventually, free_addr, Guard, TempDir, PATIENCE};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

/// A single-node etcd on two loopback ports, its data in `dir`.
pub struct Etcd {
    /// Its client address (`http://` + this in `cluster.etcd.endpoints`).
    pub client: SocketAddr,
    peer: SocketAddr,
    dir: TempDir,
    proc: Option<Guard>,
}

impl Etcd {
    /// Starts it, ready to answer.
    pub async fn start() -> Etcd {
        let mut etcd = Etcd {
            client: free_addr(),
            peer: free_addr(),
            dir: TempDir::new("etcd"),
            proc: None,
        };
        etcd.run().await;
        etcd
    }

    /// Runs it (again, on the same ports and data), ready to answer.
    pub async fn run(&mut self) {
        let (client, peer) = (format!("http://{}", self.client), format!("http://{}", self.peer));
        let log = std::fs::File::create(self.dir.path("etcd.log")).expect("log file");
        let child = Command::new("etcd")
            .args(["--name", "t", "--data-dir"])
            .arg(self.dir.path("data"))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("t={peer}"), "--log-level", "warn"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd (Debian's etcd-server) must be installed: scripts/setup does it");
        self.proc = Some(Guard(child));
        let client = self.client;
        let up = eventually(PATIENCE, async || {
            get(client, "/health").await.is_ok_and(|r| r.text().contains("true"))
        })
        .await;
        assert!(up, "etcd did not start: {}", self.log());
    }

    /// Stops it (SIGTERM) and waits for its exit.
    pub fn stop(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.signal("TERM");
            proc.wait_exit(PATIENCE);
        }
    }

    /// What it logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path("etcd.log")).unwrap_or_default()
    }
}
