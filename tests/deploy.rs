//! The Kubernetes manifests in deploy/kubernetes/ and what ties them to lb, without a cluster:
//! the Deployment runs lb on the file the ConfigMap mounts, its ports and probes are lb.yaml's
//! listener and admin endpoints, the termination grace period outlasts preStop and lb's drain,
//! the pool's DNS name is the headless Service's, and lb accepts the ConfigMap's lb.yaml.
//! (Their schemas are checked offline by kubernetes-validate in .ci/run.)

mod common;

use std::process::Command;

use common::{crate_dir, TempDir, LB};
use serde_yaml::Value;

/// deploy/kubernetes/`file`, parsed (one document per file).
fn manifest(file: &str) -> Value {
    let path = crate_dir().join("deploy/kubernetes").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `value` at the dotted `path` (numbers index sequences), or a panic naming the path.
fn at<'a>(value: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(value, |v, key| {
        let next = match key.parse::<usize>() {
            Ok(i) => v.get(i),
            Err(_) => v.get(key),
        };
        next.unwrap_or_else(|| panic!("no {path} (stopped at {key})"))
    })
}

fn str_at<'a>(value: &'a Value, path: &str) -> &'a str {
    at(value, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path} is not a string"))
}

fn u64_at(value: &Value, path: &str) -> u64 {
    at(value, path)
        .as_u64()
        .unwrap_or_else(|| panic!("{path} is not a number"))
}

fn seq_at<'a>(value: &'a Value, path: &str) -> &'a Vec<Value> {
    at(value, path)
        .as_sequence()
        .unwrap_or_else(|| panic!("{path} is not a list"))
}

/// The one item of `list` whose `key` is `name`.
fn named<'a>(list: &'a [Value], key: &str, name: &str) -> &'a Value {
    let found: Vec<&Value> = list
        .iter()
        .filter(|v| v.get(key).and_then(Value::as_str) == Some(name))
        .collect();
    assert_eq!(found.len(), 1, "one item with {key}: {name} expected in {list:?}");
    found[0]
}

/// The ConfigMap's only key and its text.
fn config_file() -> (String, String) {
    let map = manifest("configmap.yaml");
    let data = at(&map, "data").as_mapping().expect("data is a mapping");
    assert_eq!(data.len(), 1, "the ConfigMap holds lb.yaml only");
    let (key, text) = data.iter().next().unwrap();
    (key.as_str().unwrap().to_string(), text.as_str().unwrap().to_string())
}

/// The ConfigMap's lb.yaml, parsed.
fn lb_yaml() -> Value {
    serde_yaml::from_str(&config_file().1).expect("lb.yaml in the ConfigMap parses")
}

/// The port of an `IP:port` address in lb.yaml.
fn port_of(address: &str) -> u64 {
    address
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("{address} has no port"))
}

fn pod_spec() -> Value {
    at(&manifest("deployment.yaml"), "spec.template.spec").clone()
}

/// The lb container of the Deployment.
fn lb_container() -> Value {
    named(seq_at(&pod_spec(), "containers"), "name", "lb").clone()
}

/// The containerPort a probe's or Service's port means: a number, or a port name of the
/// container.
fn container_port(port: &Value) -> u64 {
    if let Some(n) = port.as_u64() {
        return n;
    }
    let name = port.as_str().expect("a port is a number or a name");
    u64_at(named(seq_at(&lb_container(), "ports"), "name", name), "containerPort")
}

/// The namespace everything is applied to: the kustomization's, else `default`.
fn namespace() -> String {
    manifest("kustomization.yaml")
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string()
}

#[test]
fn the_deployment_runs_lb_on_the_file_the_config_map_mounts() {
    let container = lb_container();
    let args: Vec<&str> = seq_at(&container, "args").iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(args.len(), 2, "{args:?}");
    assert_eq!(args[0], "-c", "{args:?}");

    let volumes = seq_at(&pod_spec(), "volumes").clone();
    let config_map = str_at(&manifest("configmap.yaml"), "metadata.name").to_string();
    let volume = volumes
        .iter()
        .find(|v| v.get("configMap").and_then(|c| c.get("name")).and_then(Value::as_str) == Some(&config_map))
        .unwrap_or_else(|| panic!("no volume of ConfigMap {config_map}"));
    let mount = named(seq_at(&container, "volumeMounts"), "name", str_at(volume, "name"));
    let (key, _) = config_file();
    let mounted = format!("{}/{key}", str_at(mount, "mountPath").trim_end_matches('/'));
    assert_eq!(
        args[1], mounted,
        "-c must name the ConfigMap's file where it is mounted"
    );
}

#[test]
fn the_admin_token_comes_from_the_secret_into_the_variable_lb_yaml_names() {
    let config = lb_yaml();
    let var = str_at(&config, "admin.token_env");
    let container = lb_container();
    let env = named(seq_at(&container, "env"), "name", var);
    let secret = manifest("secret.yaml");
    assert_eq!(
        str_at(env, "valueFrom.secretKeyRef.name"),
        str_at(&secret, "metadata.name")
    );
    let key = str_at(env, "valueFrom.secretKeyRef.key");
    assert!(
        at(&secret, "stringData").get(key).is_some(),
        "secret.yaml has no key {key}"
    );
}

#[test]
fn the_container_ports_are_the_listener_and_admin_ports_of_lb_yaml() {
    let config = lb_yaml();
    let listeners = seq_at(&config, "listeners");
    assert_eq!(listeners.len(), 1, "one listener: {listeners:?}");
    let listen = str_at(&config, "listeners.0.address");
    let admin = str_at(&config, "admin.address");
    assert!(
        listen.starts_with("0.0.0.0:"),
        "the listener must be reachable from outside the pod"
    );
    assert!(
        admin.starts_with("0.0.0.0:"),
        "the admin listener must be reachable by the kubelet"
    );

    assert_eq!(container_port(&Value::from("http")), port_of(listen));
    assert_eq!(container_port(&Value::from("admin")), port_of(admin));
    assert_eq!(seq_at(&lb_container(), "ports").len(), 2);
}

#[test]
fn the_service_sends_port_80_to_the_listener_and_exposes_admin() {
    let config = lb_yaml();
    let service = manifest("service.yaml");
    let ports = seq_at(&service, "spec.ports");
    let http = named(ports, "name", "http");
    assert_eq!(u64_at(http, "port"), 80);
    assert_eq!(
        container_port(at(http, "targetPort")),
        port_of(str_at(&config, "listeners.0.address"))
    );
    let admin = named(ports, "name", "admin");
    assert_eq!(
        container_port(at(admin, "targetPort")),
        port_of(str_at(&config, "admin.address"))
    );

    // The Service and the PodDisruptionBudget select the Deployment's pods.
    let pod_labels = at(&manifest("deployment.yaml"), "spec.template.metadata.labels").clone();
    for (selector, what) in [
        (at(&service, "spec.selector").clone(), "service"),
        (at(&manifest("pdb.yaml"), "spec.selector.matchLabels").clone(), "pdb"),
        (
            at(&manifest("deployment.yaml"), "spec.selector.matchLabels").clone(),
            "deployment",
        ),
    ] {
        for (k, v) in selector.as_mapping().unwrap() {
            assert_eq!(
                pod_labels.get(k),
                Some(v),
                "{what} selects {k:?}={v:?}, not on the pods"
            );
        }
    }
    assert_eq!(u64_at(&manifest("pdb.yaml"), "spec.minAvailable"), 1);
}

#[test]
fn the_probes_ask_the_admin_listener_for_healthz_and_readyz() {
    let admin_port = port_of(str_at(&lb_yaml(), "admin.address"));
    let container = lb_container();
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = at(&container, &format!("{probe}.httpGet"));
        assert_eq!(str_at(get, "path"), path, "{probe}");
        assert_eq!(
            container_port(at(get, "port")),
            admin_port,
            "{probe} must go to the admin listener"
        );
        assert!(
            get.get("httpHeaders").is_none(),
            "{probe}: /healthz and /readyz need no token"
        );
    }
}

#[test]
fn the_termination_grace_period_outlasts_the_pre_stop_sleep_and_lbs_drain() {
    let server = at(&lb_yaml(), "server").clone();
    let grace = u64_at(&server, "grace_period_seconds");
    let shutdown = u64_at(&server, "graceful_shutdown_timeout_seconds");
    let command = seq_at(&lb_container(), "lifecycle.preStop.exec.command").clone();
    assert_eq!(command.len(), 2, "preStop: {command:?}");
    assert_eq!(command[0].as_str(), Some("sleep"));
    let sleep: u64 = command[1].as_str().and_then(|s| s.parse().ok()).expect("sleep SECONDS");
    assert!(sleep > 0, "the preStop sleep lets endpoints be removed before SIGTERM");
    let termination = u64_at(&pod_spec(), "terminationGracePeriodSeconds");
    assert!(
        termination > sleep + grace + shutdown,
        "terminationGracePeriodSeconds {termination} must exceed preStop {sleep} + grace {grace} + shutdown {shutdown}"
    );
}

#[test]
fn lb_writes_only_to_the_tmp_volume_as_the_images_user() {
    let server = at(&lb_yaml(), "server").clone();
    let container = lb_container();
    assert_eq!(
        at(&container, "securityContext.readOnlyRootFilesystem").as_bool(),
        Some(true)
    );
    assert_eq!(at(&container, "securityContext.runAsNonRoot").as_bool(), Some(true));
    assert_eq!(
        u64_at(&container, "securityContext.runAsUser"),
        10001,
        "the Dockerfile's uid"
    );

    let tmp = named(seq_at(&container, "volumeMounts"), "mountPath", "/tmp");
    let pod = pod_spec();
    let volume = named(seq_at(&pod, "volumes"), "name", str_at(tmp, "name"));
    assert!(volume.get("emptyDir").is_some(), "/tmp is an emptyDir");
    for key in ["pid_file", "upgrade_sock"] {
        assert!(
            str_at(&server, key).starts_with("/tmp/"),
            "server.{key} must be under /tmp"
        );
    }
}

#[test]
fn the_pool_resolves_the_headless_services_dns_name() {
    let dns = at(&lb_yaml(), "upstreams.web.discovery.dns").clone();
    let headless = manifest("backends-headless.yaml");
    assert_eq!(
        str_at(&headless, "spec.clusterIP"),
        "None",
        "the Service must be headless"
    );
    let name = str_at(&headless, "metadata.name");
    assert_eq!(
        str_at(&dns, "name"),
        format!("{name}.{}.svc.cluster.local", namespace()),
        "the pool's DNS name must be the headless Service's, in the kustomization's namespace"
    );
    let port = u64_at(named(seq_at(&headless, "spec.ports"), "name", "http"), "port");
    assert_eq!(u64_at(&dns, "port"), port);
}

#[test]
fn the_kustomization_lists_every_manifest() {
    let listed: Vec<String> = seq_at(&manifest("kustomization.yaml"), "resources")
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    let mut files: Vec<String> = std::fs::read_dir(crate_dir().join("deploy/kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".yaml") && f != "kustomization.yaml")
        .collect();
    files.sort();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(sorted, files);
}

#[test]
fn lb_accepts_the_config_maps_lb_yaml_with_the_admin_token_set() {
    let dir = TempDir::new("deploy");
    let file = dir.path("lb.yaml");
    std::fs::write(&file, config_file().1).unwrap();
    let file = file.to_str().unwrap();
    let var = str_at(&lb_yaml(), "admin.token_env").to_string();

    let out = Command::new(LB)
        .args(["-t", "-c", file])
        .env(&var, "test-token")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("is valid"), "{stdout}");

    // Without the Secret's variable lb refuses to start (the admin listener is not loopback).
    let out = Command::new(LB)
        .args(["-t", "-c", file])
        .env_remove(&var)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("token_env"));
}
