//! deploy/compose.yaml and deploy/k8s/ validated offline: `podman-compose config` (PyPI
//! podman-compose) and `kubernetes-validate --strict` (PyPI, the Kubernetes OpenAPI
//! schemas), plus what neither tool checks and an attacker would look for: a published
//! Orthanc port, a network with a route out that Orthanc sits on, a secret in an
//! environment variable, a container that may write its root or gain privileges, a
//! gateway configuration that `pacsgate check` refuses. Each check is also run on a broken
//! copy to show it can fail.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::process::run;

const COMPOSE_VENV: &str = "/opt/podman-compose-venv";
const K8S_VENV: &str = "/opt/kubernetes-validate-venv";

fn deploy() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// A pinned PyPI tool in its own venv (tests/run.sh installs it; installed here if
/// missing, so a missing tool never passes silently).
fn venv_tool(venv: &str, package: &str, tool: &str) -> PathBuf {
    let bin = Path::new(venv).join("bin").join(tool);
    if !bin.exists() {
        let ok = Command::new("python3")
            .args(["-m", "venv", venv])
            .status()
            .is_ok_and(|s| s.success())
            && Command::new(Path::new(venv).join("bin/pip"))
                .args(["install", "-q", package])
                .status()
                .is_ok_and(|s| s.success());
        assert!(
            ok && bin.exists(),
            "cannot install {package} into {venv}; run tests/run.sh"
        );
    }
    bin
}

/// YAML (one or more documents) to JSON with the venv's PyYAML (podman-compose needs it).
fn yaml_docs(text: &str) -> Vec<Value> {
    let python = venv_tool(COMPOSE_VENV, "podman-compose==1.6.0", "python3");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.yaml");
    std::fs::write(&input, text).unwrap();
    let out = Command::new(python)
        .args([
            "-c",
            "import sys, json, yaml; json.dump(list(yaml.safe_load_all(open(sys.argv[1]))), sys.stdout)",
        ])
        .arg(&input)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

// === compose ===

/// deploy/compose.yaml with its files in a temp copy, secrets made by make-secrets.sh,
/// normalised by `podman-compose config`.
fn compose_config(edit: impl Fn(String) -> String) -> (tempfile::TempDir, Result<Value, String>) {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(deploy().join("compose.yaml")).unwrap();
    std::fs::write(dir.path().join("compose.yaml"), edit(text)).unwrap();
    let status = Command::new("cp")
        .arg("-r")
        .arg(deploy().join("compose"))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let secrets = dir.path().join("compose/secrets");
    let _ = std::fs::remove_dir_all(&secrets);
    let mut make = Command::new("bash");
    make.arg(dir.path().join("compose/make-secrets.sh"))
        .arg(&secrets);
    let (status, out) = run(make, Duration::from_secs(60));
    assert!(status.success(), "make-secrets.sh: {out}");

    let tool = venv_tool(COMPOSE_VENV, "podman-compose==1.6.0", "podman-compose");
    let mut cmd = Command::new(tool);
    cmd.args(["-f", "compose.yaml", "config"])
        .current_dir(dir.path());
    let out = cmd.output().expect("podman-compose");
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        return (dir, Err(err));
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let doc = yaml_docs(&text).into_iter().next().expect("one document");
    (dir, Ok(doc))
}

/// What `podman-compose config` does not check; one line per problem.
fn compose_problems(dir: &Path, c: &Value) -> Vec<String> {
    let mut p = Vec::new();
    let services = c["services"].as_object().cloned().unwrap_or_default();
    for want in ["pacsgate", "orthanc", "postgres", "s3", "redis"] {
        if !services.contains_key(want) {
            p.push(format!("service {want} missing"));
        }
    }
    let internal = |net: &str| c["networks"][net]["internal"] == Value::Bool(true);
    for (name, s) in &services {
        if name != "pacsgate" && s.get("ports").is_some() {
            p.push(format!("{name} publishes ports {}", s["ports"]));
        }
        for (key, value) in s["environment"].as_object().into_iter().flatten() {
            let k = key.to_ascii_uppercase();
            let secretish = ["PASSWORD", "SECRET", "TOKEN", "KEY"]
                .iter()
                .any(|w| k.contains(w));
            if secretish && !k.ends_with("_FILE") {
                p.push(format!("{name}: secret in environment {key}={value}"));
            }
        }
        for secret in s["secrets"].as_array().into_iter().flatten() {
            let source = secret["source"].as_str().or(secret.as_str()).unwrap_or("");
            match c["secrets"][source]["file"].as_str() {
                Some(file) if dir.join(file).is_file() => {}
                Some(file) => p.push(format!("{name}: secret {source}: {file} missing")),
                None => p.push(format!("{name}: secret {source} is not declared")),
            }
        }
    }
    let ports: Vec<String> = services["pacsgate"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| v.as_str().unwrap_or("").to_string())
        .collect();
    if ports != ["443:8443", "11112:11112"] {
        p.push(format!("pacsgate publishes {ports:?}"));
    }
    for (name, user) in [("pacsgate", "10001:10001"), ("orthanc", "999:999")] {
        let s = &services[name];
        if s["user"] != user
            || s["read_only"] != true
            || s["cap_drop"] != serde_json::json!(["ALL"])
        {
            p.push(format!("{name}: user/read_only/cap_drop: {s}"));
        }
    }
    for net in services["orthanc"]["networks"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let net = net.as_str().unwrap_or("");
        if !internal(net) {
            p.push(format!("orthanc is on {net}, which is not internal"));
        }
    }
    let health = services["pacsgate"]["healthcheck"]["test"].to_string();
    if !health.contains("\"healthcheck\"") {
        p.push(format!("pacsgate healthcheck: {health}"));
    }
    p
}

#[test]
fn compose_stack_validates_and_publishes_only_the_gateway() {
    let (dir, config) = compose_config(|t| t);
    let config = config.unwrap_or_else(|e| panic!("podman-compose config failed: {e}"));
    let problems = compose_problems(dir.path(), &config);
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn compose_checks_catch_a_published_orthanc_and_a_missing_secret() {
    let published = |t: String| {
        t.replace(
            "    expose: [\"8042\", \"4242\"]",
            "    ports: [\"8042:8042\"]",
        )
    };
    let (dir, config) = compose_config(published);
    let problems = compose_problems(dir.path(), &config.expect("config"));
    assert!(
        problems.iter().any(|p| p.contains("orthanc publishes")),
        "{problems:#?}"
    );

    let undeclared = |t: String| t.replace("  tls_key:\n", "  tls_key_renamed:\n");
    let (dir, config) = compose_config(undeclared);
    let problems = compose_problems(dir.path(), &config.expect("config"));
    assert!(
        problems
            .iter()
            .any(|p| p.contains("tls_key is not declared")),
        "{problems:#?}"
    );

    let on_edge = |t: String| {
        t.replace(
            "    networks: [pacs, data]",
            "    networks: [pacs, data, edge]",
        )
    };
    let (dir, config) = compose_config(on_edge);
    let problems = compose_problems(dir.path(), &config.expect("config"));
    assert!(
        problems.iter().any(|p| p.contains("orthanc is on edge")),
        "{problems:#?}"
    );

    let (dir, config) = compose_config(|t| t.replace("\"443:8443\"", "\"8443:8443\""));
    let problems = compose_problems(dir.path(), &config.expect("config"));
    assert!(
        problems.iter().any(|p| p.contains("pacsgate publishes")),
        "{problems:#?}"
    );
}

// === Kubernetes ===

fn k8s_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy().join("k8s"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

fn kubernetes_validate(files: &[PathBuf]) -> (bool, String) {
    let tool = venv_tool(
        K8S_VENV,
        "kubernetes-validate==1.37.0",
        "kubernetes-validate",
    );
    let out = Command::new(tool)
        .arg("--strict")
        .args(files)
        .output()
        .expect("kubernetes-validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn kubernetes_manifests_validate_against_the_schemas() {
    let files = k8s_files();
    assert_eq!(files.len(), 4, "{files:?}");
    let (ok, out) = kubernetes_validate(&files);
    assert!(ok, "{out}");
    assert_eq!(out.matches(" passed for resource ").count(), 5, "{out}");

    // --strict refuses what the schema does not know: a misspelt security field.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(deploy().join("k8s/deployment.yaml")).unwrap();
    let bad = dir.path().join("deployment.yaml");
    std::fs::write(
        &bad,
        text.replacen(
            "readOnlyRootFilesystem: true",
            "readOnlyRootFileSystem: true",
            1,
        ),
    )
    .unwrap();
    let (ok, out) = kubernetes_validate(&[bad]);
    assert!(!ok, "a misspelt field passed: {out}");
}

#[test]
fn kubernetes_pod_is_locked_down_and_probed_on_the_admin_listener() {
    let docs: Vec<Value> = k8s_files()
        .iter()
        .flat_map(|f| yaml_docs(&std::fs::read_to_string(f).unwrap()))
        .collect();
    let kind = |k: &str| {
        docs.iter()
            .find(|d| d["kind"] == k)
            .unwrap_or_else(|| panic!("no {k}"))
    };
    let pod = &kind("Deployment")["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(pod["automountServiceAccountToken"], false);
    let containers: Vec<&Value> = pod["containers"]
        .as_array()
        .into_iter()
        .chain(pod["initContainers"].as_array())
        .flatten()
        .collect();
    assert_eq!(containers.len(), 3);
    for c in &containers {
        let sc = &c["securityContext"];
        assert_eq!(sc["runAsNonRoot"], true, "{}", c["name"]);
        assert!(
            sc["runAsUser"].as_u64().is_some_and(|u| u > 0),
            "{}",
            c["name"]
        );
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{}", c["name"]);
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{}", c["name"]);
        assert_eq!(
            sc["capabilities"]["drop"],
            serde_json::json!(["ALL"]),
            "{}",
            c["name"]
        );
        assert!(sc["capabilities"]["add"].is_null(), "{}", c["name"]);
        assert_eq!(
            sc["seccompProfile"]["type"], "RuntimeDefault",
            "{}",
            c["name"]
        );
        assert!(
            c["resources"]["limits"]["cpu"].is_string()
                && c["resources"]["limits"]["memory"].is_string()
        );
        assert!(c["env"].is_null(), "{}: secrets come as files", c["name"]);
        for port in c["ports"].as_array().into_iter().flatten() {
            let n = port["containerPort"].as_u64().unwrap_or(0);
            assert!(n == 8443 || n == 11112, "{} exposes {n}", c["name"]);
        }
    }
    let gw = containers
        .iter()
        .find(|c| c["name"] == "pacsgate")
        .expect("pacsgate sidecar");
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let cmd = gw[probe]["exec"]["command"].to_string();
        assert!(
            cmd.contains("\"healthcheck\"") && cmd.contains(&format!("127.0.0.1:9090{path}")),
            "{probe}: {cmd}"
        );
    }
    let targets: Vec<&Value> = kind("Service")["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["targetPort"])
        .collect();
    assert_eq!(targets, [&Value::from("https"), &Value::from("dicom")]);
    let ingress = &kind("NetworkPolicy")["spec"]["ingress"];
    let ports: Vec<u64> = ingress
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            r["ports"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["port"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(ports, [8443, 11112]);
    assert!(ingress
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r.get("from").is_none()));
}

// === the gateway configurations themselves ===

/// `pacsgate check` on a deployment's config.toml with its absolute secret paths moved
/// into a temp dir holding real files (a self-signed pair, a credentials file).
fn pacsgate_check(config: &str, moves: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut text = config.to_string();
    for from in moves {
        let to = dir.path().join(from.trim_matches('/').replace('/', "_"));
        std::fs::create_dir_all(&to).unwrap();
        text = text.replace(from, &format!("{}/", to.display()));
    }
    let root = dir.path().display().to_string();
    for sub in moves {
        let d = format!("{root}/{}", sub.trim_matches('/').replace('/', "_"));
        let mut c = Command::new(support::gateway::binary());
        c.args([
            "cert",
            "self-signed",
            "--cert",
            &format!("{d}/tls.crt"),
            "--key",
            &format!("{d}/tls.key"),
        ]);
        let (status, out) = run(c, Duration::from_secs(60));
        assert!(status.success(), "{out}");
        let creds = format!("{d}/orthanc.credentials");
        std::fs::write(&creds, "pacsgate:secret\n").unwrap();
        let mode = std::os::unix::fs::PermissionsExt::from_mode(0o600);
        std::fs::set_permissions(&creds, mode).unwrap();
    }
    support::gateway::run_expecting_exit(dir.path(), &text, "check")
}

#[test]
fn deployment_gateway_configs_pass_pacsgate_check() {
    let compose = std::fs::read_to_string(deploy().join("compose/pacsgate.toml")).unwrap();
    let (code, out) = pacsgate_check(&compose, &["/run/secrets/", "/var/lib/pacsgate/"]);
    assert_eq!(code, Some(0), "compose/pacsgate.toml: {out}");

    let docs = yaml_docs(&std::fs::read_to_string(deploy().join("k8s/config.yaml")).unwrap());
    let k8s = docs
        .iter()
        .find(|d| d["metadata"]["name"] == "pacsgate-config")
        .and_then(|d| d["data"]["config.toml"].as_str())
        .expect("pacsgate-config config.toml")
        .to_string();
    let (code, out) = pacsgate_check(&k8s, &["/etc/pacsgate/", "/var/lib/pacsgate/"]);
    assert_eq!(code, Some(0), "k8s config.toml: {out}");

    // The check can fail: the same config with a typo'd key is refused (exit 64).
    let (code, out) = pacsgate_check(
        &k8s.replace("[admin]", "[admin]\nlisen = \"x\""),
        &["/etc/pacsgate/", "/var/lib/pacsgate/"],
    );
    assert_eq!(code, Some(64), "{out}");
}
