//! `lb reload`: tells the running lb to re-read its configuration and apply pools and routes in
//! place. Through the admin API when the configuration has one (the answer says what was
//! applied and what needs `lb upgrade`), else by SIGHUP to the pid in `server.pid_file`.

use crate::config::Config;
use crate::process::lifecycle::probe_addr;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(60);

/// Asks the running lb of `config` to reload; returns what it answered.
pub fn run(config: &Config) -> Result<String, String> {
    let Some(admin) = &config.admin else {
        return hangup(&config.server.pid_file);
    };
    let token = admin.token().map_err(|(field, msg)| format!("admin.{field}: {msg}"))?;
    let addr = probe_addr(admin.address.0);
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map_err(|e| match e.kind() {
        std::io::ErrorKind::ConnectionRefused => format!("is lb running? no admin listener on {addr}"),
        _ => format!("cannot reach the admin listener {addr}: {e}"),
    })?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request =
        format!("POST /api/v1/reload HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(|e| format!("no answer from {addr}: {e}"))?;
    let (status, body) = split(&answer).ok_or_else(|| format!("{addr} did not answer HTTP"))?;
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let text = |key: &str| json.get(key).and_then(|v| v.as_str()).unwrap_or("").to_string();
    match status {
        200 => Ok(format!("reloaded: {}", text("note"))),
        _ => Err(format!("reload refused ({status}): {}", text("error"))),
    }
}

/// `(status, body)` of a raw HTTP/1.1 response.
fn split(answer: &[u8]) -> Option<(u16, &[u8])> {
    let head_end = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let status = std::str::from_utf8(answer.get(9..12)?).ok()?.parse().ok()?;
    Some((status, &answer[head_end + 4..]))
}

fn hangup(pid_file: &str) -> Result<String, String> {
    use nix::sys::signal::{kill, Signal};
    let text = std::fs::read_to_string(pid_file).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("is lb running? no pid file {pid_file}"),
        _ => format!("cannot read pid file {pid_file}: {e}"),
    })?;
    let pid: i32 = text
        .trim()
        .parse()
        .map_err(|_| format!("pid file {pid_file} holds {:?}", text.trim()))?;
    kill(nix::unistd::Pid::from_raw(pid), Signal::SIGHUP).map_err(|e| match e {
        nix::errno::Errno::ESRCH => format!("is lb running? no process {pid} (from pid file {pid_file})"),
        _ => format!("cannot signal pid {pid}: {e}"),
    })?;
    Ok(format!(
        "sent SIGHUP to pid {pid}: it reloads pools and routes; its log says what was applied (configure admin: for a direct answer)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_answers_split() {
        let (status, body) = split(b"HTTP/1.1 400 Bad Request\r\nA: b\r\n\r\n{\"error\":\"x\"}").unwrap();
        assert_eq!((status, body), (400, &b"{\"error\":\"x\"}"[..]));
        assert!(split(b"garbage").is_none());
    }
}
