//! `lb reload`: tells the running lb to re-read its configuration and apply pools and routes in
//! place. Through the admin API when the configuration has one (the answer says what was
//! applied and what needs `lb upgrade`; a process handing over to a new one refuses with 503,
//! and the request is retried until it reaches the new one), else by SIGHUP to the pid in
//! `server.pid_file`.

use crate::config::Config;
use crate::process::lifecycle::probe_addr;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(60);
/// How long a reload refused with 503 by a process handing over to a new one is retried: the
/// old process shares the listening sockets with the new one for Pingora's 5 s hand-over
/// window, so a connection may reach the old one until then.
const HANDOVER_RETRY: Duration = Duration::from_secs(10);
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Asks the running lb of `config` to reload; returns what it answered.
pub fn run(config: &Config) -> Result<String, String> {
    let Some(admin) = &config.admin else {
        return hangup(&config.server.pid_file);
    };
    let token = admin.token().map_err(|(field, msg)| format!("admin.{field}: {msg}"))?;
    via_admin(probe_addr(admin.address.0), token.as_deref(), HANDOVER_RETRY)
}

/// Asks the admin listener at `addr` to reload, retrying a 503 for `retry_for`.
fn via_admin(addr: SocketAddr, token: Option<&str>, retry_for: Duration) -> Result<String, String> {
    let end = Instant::now() + retry_for;
    loop {
        let (status, json) = post(addr, token)?;
        let text = |key: &str| json.get(key).and_then(|v| v.as_str()).unwrap_or("").to_string();
        match status {
            200 => return Ok(format!("reloaded: {}", text("note"))),
            // A process stopping or handing over (an `lb upgrade` under way): the next
            // connection may reach the new one.
            503 if Instant::now() < end => std::thread::sleep(RETRY_PAUSE),
            _ => return Err(format!("reload refused ({status}): {}", text("error"))),
        }
    }
}

/// One `POST /api/v1/reload` to `addr`: the status and the JSON answer.
fn post(addr: SocketAddr, token: Option<&str>) -> Result<(u16, serde_json::Value), String> {
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
    Ok((status, serde_json::from_slice(body).unwrap_or_default()))
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

    /// A listener answering its connections with `answers` in turn (the last one repeated)
    /// until it answered 200 or 5 s passed: its address and the number of connections it took.
    fn admin_answering(answers: &'static [&'static str]) -> (SocketAddr, std::thread::JoinHandle<usize>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let thread = std::thread::spawn(move || {
            let (end, mut taken) = (Instant::now() + Duration::from_secs(5), 0);
            while Instant::now() < end {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                conn.set_nonblocking(false).unwrap();
                let _ = conn.read(&mut [0u8; 1024]);
                let (status, body) = answers[taken.min(answers.len() - 1)].split_once(' ').unwrap();
                let answer = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                conn.write_all(answer.as_bytes()).unwrap();
                taken += 1;
                if status == "200" {
                    break;
                }
            }
            taken
        });
        (addr, thread)
    }

    #[test]
    fn a_reload_refused_by_a_process_handing_over_is_retried() {
        const BUSY: &str = r#"503 {"error":"handing over"}"#;
        let (addr, admin) = admin_answering(&[BUSY, BUSY, r#"200 {"note":"pool web changed"}"#]);
        let answer = via_admin(addr, None, Duration::from_secs(30));
        assert_eq!(answer.as_deref(), Ok("reloaded: pool web changed"));
        assert_eq!(admin.join().unwrap(), 3);

        // Not forever: after `retry_for`, the refusal is the answer.
        let (addr, _admin) = admin_answering(&[BUSY]);
        let answer = via_admin(addr, None, Duration::from_millis(150));
        assert_eq!(answer, Err("reload refused (503): handing over".to_string()));
        // Nor another refusal.
        let (addr, _admin) = admin_answering(&[r#"400 {"error":"bad file"}"#]);
        let answer = via_admin(addr, None, Duration::from_secs(30));
        assert_eq!(answer, Err("reload refused (400): bad file".to_string()));
    }
}
