//! Test certificates, made with the `openssl` command line: a CA per directory (`ca.pem`), and
//! server certificates it signs, EC P-256, valid for a couple of days, with the names given as
//! subject alternative names.

use super::TempDir;
use std::path::PathBuf;
use std::process::Command;

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is missing: run scripts/setup");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const EC: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

/// The directory's CA (made on first use): `ca.pem`, `ca.key`.
fn ca(dir: &TempDir) -> (String, String) {
    let (cert, key) = (dir.path("ca.pem"), dir.path("ca.key"));
    let (c, k) = (cert.display().to_string(), key.display().to_string());
    if !cert.exists() {
        let mut args = vec![
            "req",
            "-x509",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=lb test CA",
            "-keyout",
            &k,
            "-out",
            &c,
        ];
        args.extend(EC);
        openssl(&args);
    }
    (c, k)
}

/// A server certificate for `names` (the first is also the common name) signed by the
/// directory's CA, in `dir` as `<file>.pem` and `<file>.key`.
pub fn make(dir: &TempDir, file: &str, names: &[&str]) -> (PathBuf, PathBuf) {
    let (ca_cert, ca_key) = ca(dir);
    let (cert, key) = (dir.path(&format!("{file}.pem")), dir.path(&format!("{file}.key")));
    let csr = dir.path(&format!("{file}.csr")).display().to_string();
    let ext = dir.path(&format!("{file}.ext"));
    let sans: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
    std::fs::write(
        &ext,
        format!(
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName={}\n",
            sans.join(",")
        ),
    )
    .expect("write ext");
    let (c, k) = (cert.display().to_string(), key.display().to_string());
    let subj = format!("/CN={}", names[0]);
    let mut req = vec!["req", "-new", "-nodes", "-subj", &subj, "-keyout", &k, "-out", &csr];
    req.extend(EC);
    openssl(&req);
    let ext = ext.display().to_string();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca_cert,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &ext,
        "-out",
        &c,
    ]);
    (cert, key)
}

/// Runs curl with `args`: (exit code, stdout, stderr).
pub fn curl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new("curl")
        .args(["--max-time", "20"])
        .args(args)
        .output()
        .expect("curl is missing: run scripts/setup");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The subject curl saw for `https://name:port/path` (connecting to 127.0.0.1), and what it
/// printed with `-w`.
pub fn subject(name: &str, port: u16, extra: &[&str]) -> (String, String) {
    let url = format!("https://{name}:{port}/");
    let resolve = format!("{name}:{port}:127.0.0.1");
    let mut args = vec![
        "-vsk",
        "--resolve",
        &resolve,
        "-o",
        "/dev/null",
        "-w",
        "%{http_version} %{http_code}",
    ];
    args.extend_from_slice(extra);
    args.push(&url);
    let (_, out, err) = curl(&args);
    let subject = err
        .lines()
        .find_map(|l| l.trim_start_matches('*').trim().strip_prefix("subject: "))
        .unwrap_or("")
        .to_string();
    (subject, out)
}
