//! What ops deploy, checked offline: the container image (every shared library the binary
//! links comes from the runtime base or the packages the Dockerfile installs), the Kubernetes
//! base and overlays (rendered by `kubectl kustomize`, validated strictly against a pinned
//! Kubernetes version, custom resources against validators generated from their CRDs, the
//! workload policies, and every container's arguments and VERITRACE__ variables run through
//! the binary itself), the alerts (`promtool check rules` and `promtool test rules`) and the
//! Grafana dashboard (every panel's expression parses and names only metrics and labels
//! Veritrace exports).
//!
//! The tools come from scripts/test: kubernetes-validate (tools/python), the CRD validators
//! (`npm ci --prefix tools/k8s`, run by node), promtool (Debian's prometheus) and kubectl. A
//! missing tool fails the test, never skips it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The Kubernetes release the manifests are validated against (bundled by
/// kubernetes-validate 1.37.0, which tools/python pins).
const KUBERNETES_VERSION: &str = "1.34.0";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_veritrace"))
}

fn tool(var: &str, name: &str, version: &[&str], installed_by: &str) -> PathBuf {
    let p = std::env::var_os(var).map_or_else(|| PathBuf::from(name), PathBuf::from);
    match Command::new(&p).args(version).output() {
        Ok(o) if o.status.success() => p,
        Ok(o) => panic!(
            "{} {version:?} failed: {}{}",
            p.display(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!(
            "{name} is needed ({installed_by}; or set {var}): {} cannot run: {e}",
            p.display()
        ),
    }
}

fn run(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"))
}

fn ok(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let o = run(cmd);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{shown} failed ({}):\n{out}{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

fn python() -> PathBuf {
    veritrace_testkit::python::require_python("kubernetes-validate")
        .unwrap_or_else(|e| panic!("{e}"))
}

fn validator() -> PathBuf {
    let dir = root().join("tools/k8s");
    assert!(
        dir.join("node_modules/@kubernetes-models/keda").is_dir()
            && dir
                .join("node_modules/@kubernetes-models/prometheus-operator")
                .is_dir(),
        "the CRD validators are not installed: run scripts/test (npm ci --prefix tools/k8s)"
    );
    tool(
        "NODE",
        "node",
        &["--version"],
        "Node.js, which scripts/test uses for npm",
    );
    dir.join("validate.py")
}

fn promtool() -> PathBuf {
    tool(
        "VERITRACE_PROMTOOL",
        "promtool",
        &["--version"],
        "Debian's prometheus package, installed by scripts/test",
    )
}

// ---------------------------------------------------------------------------------------
// The container image

/// The package names of a Debian dependency field (`a (>= 1), b | c, d:any`), every
/// alternative included.
fn dependency_names(field: &str) -> impl Iterator<Item = &str> {
    field
        .split([',', '|'])
        .filter_map(|d| d.split_whitespace().next())
        .map(|d| d.split(':').next().unwrap_or(d))
        .filter(|d| !d.is_empty())
}

/// What an installed package set pulls in: the packages and everything they depend on
/// (among the installed packages of this Debian release).
fn closure(
    start: impl IntoIterator<Item = String>,
    deps: &BTreeMap<String, String>,
) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut queue: VecDeque<String> = start.into_iter().collect();
    while let Some(p) = queue.pop_front() {
        if !seen.insert(p.clone()) {
            continue;
        }
        if let Some(d) = deps.get(&p) {
            queue.extend(
                dependency_names(d)
                    .filter(|n| deps.contains_key(*n))
                    .map(str::to_string),
            );
        }
    }
    seen
}

/// The Debian package that holds a file (trying the /usr-merged alternative path).
fn package_of(path: &str) -> String {
    let alternatives = [
        path.to_string(),
        path.replacen("/usr/lib/", "/lib/", 1),
        path.replacen("/lib/", "/usr/lib/", 1),
        path.replacen("/lib64/", "/usr/lib64/", 1),
    ];
    for p in alternatives {
        let o = run(Command::new("dpkg").args(["-S", &p]));
        if o.status.success() {
            let line = String::from_utf8_lossy(&o.stdout).into_owned();
            let pkg = line
                .split(':')
                .next()
                .unwrap_or_default()
                .trim()
                .to_string();
            return pkg;
        }
    }
    panic!("no Debian package holds {path} (dpkg -S)")
}

#[test]
fn the_image_provides_every_library_the_binary_links() {
    let dockerfile = std::fs::read_to_string(root().join("deploy/Dockerfile")).expect("Dockerfile");
    let cargo = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");

    // Built with the workspace's Rust and the dist profile, on the runtime's Debian release.
    let rust_version = cargo
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("rust-version in Cargo.toml");
    assert!(
        dockerfile.contains(&format!("ARG RUST_VERSION={rust_version}\n")),
        "the build image must use the workspace's rust-version {rust_version}"
    );
    let froms: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(
        froms,
        [
            "FROM rust:${RUST_VERSION}-bookworm AS build",
            "FROM debian:bookworm-slim"
        ]
    );
    assert!(dockerfile.contains("--profile dist") && cargo.contains("[profile.dist]"));
    assert!(
        dockerfile.lines().any(|l| l == "USER 10001:10001"),
        "the image runs as the numeric non-root user the manifests name"
    );
    // The libraries are compared with this machine's packages: the same Debian release.
    let os = std::fs::read_to_string("/etc/os-release").expect("/etc/os-release");
    assert!(
        os.lines().any(|l| l == "VERSION_CODENAME=bookworm"),
        "this check compares the binary with Debian bookworm's packages; this machine runs:\n{os}"
    );

    // The packages the runtime stage installs (its `apt-get install` list).
    let runtime = dockerfile
        .rsplit("FROM debian:bookworm-slim")
        .next()
        .expect("runtime stage");
    let install = runtime
        .split("--no-install-recommends")
        .nth(1)
        .expect("the runtime stage installs packages")
        .split("&&")
        .next()
        .expect("install list");
    let installed: Vec<String> = install
        .split_whitespace()
        .filter(|w| *w != "\\")
        .map(str::to_string)
        .collect();
    assert!(!installed.is_empty());

    // A Debian base image (debootstrap minbase, as debian:*-slim) holds the Essential
    // packages, apt, and what they depend on.
    let listing = ok(Command::new("dpkg-query").args([
        "-W",
        "-f",
        "${Package}\t${Essential}\t${Pre-Depends}, ${Depends}\n",
    ]));
    let mut deps = BTreeMap::new();
    let mut essential = vec!["apt".to_string()];
    for line in listing.lines() {
        let mut f = line.splitn(3, '\t');
        let (Some(pkg), Some(ess), Some(d)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if ess == "yes" {
            essential.push(pkg.to_string());
        }
        deps.insert(pkg.to_string(), d.to_string());
    }
    let base = closure(essential, &deps);
    let added = closure(installed.iter().cloned(), &deps);

    let ldd = ok(Command::new("ldd").arg(env!("CARGO_BIN_EXE_veritrace")));
    let mut from_base = Vec::new();
    let mut from_install = Vec::new();
    for line in ldd.lines() {
        let line = line.trim();
        // "libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x...)", "/lib64/ld-linux... (0x...)"
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next().unwrap_or_default(),
            None => line.split_whitespace().next().unwrap_or_default(),
        };
        if !path.starts_with('/') {
            assert!(
                line.starts_with("linux-vdso") || !line.contains("not found"),
                "unresolved library: {line}"
            );
            continue;
        }
        let pkg = package_of(path);
        if base.contains(&pkg) {
            from_base.push(format!("{path} ({pkg})"));
        } else if added.contains(&pkg) {
            from_install.push(format!("{path} ({pkg})"));
        } else {
            panic!(
                "{path} comes from Debian package {pkg}, which debian:bookworm-slim lacks and deploy/Dockerfile does not install (it installs {installed:?})"
            );
        }
    }
    eprintln!(
        "from the base image: {from_base:#?}\ninstalled by the Dockerfile: {from_install:#?}"
    );
    // The check has teeth: TLS for Kafka needs a library the slim base does not have.
    assert!(
        from_install.iter().any(|l| l.contains("libssl")),
        "expected libssl to come from the Dockerfile's packages: {from_install:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Kubernetes

fn kustomize(dir: &str, out: &Path) {
    let kubectl = tool(
        "VERITRACE_KUBECTL",
        "kubectl",
        &["version", "--client"],
        "kubectl, for `kubectl kustomize`",
    );
    let o = run(Command::new(kubectl)
        .arg("kustomize")
        .arg(root().join("deploy/kubernetes").join(dir)));
    assert!(
        o.status.success(),
        "kubectl kustomize {dir} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::write(out, &o.stdout).expect("write rendered manifests");
}

/// Validates rendered manifests; returns (built-in count, custom count, the report).
fn validate(rendered: &Path, containers: &Path) -> Result<(usize, usize, String), String> {
    let o = run(Command::new(python())
        .arg(validator())
        .arg("manifests")
        .arg(rendered)
        .arg(KUBERNETES_VERSION)
        .arg(containers));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    if !o.status.success() {
        return Err(report);
    }
    let summary = report
        .lines()
        .find_map(|l| l.strip_prefix("validated: "))
        .ok_or_else(|| format!("no summary in:\n{report}"))?;
    let n: Vec<usize> = summary
        .split(", ")
        .filter_map(|p| p.split_whitespace().next()?.parse().ok())
        .collect();
    Ok((n[0], n[1], report))
}

#[test]
fn every_overlay_renders_validates_and_runs_the_binary_it_names() {
    let tmp = tempfile::tempdir().expect("tmp");
    for (dir, custom) in [("base", 0), ("overlays/dev", 0), ("overlays/production", 6)] {
        let rendered = tmp.path().join("rendered.yaml");
        let containers = tmp.path().join("containers.json");
        kustomize(dir, &rendered);
        let (builtin, got_custom, report) =
            validate(&rendered, &containers).unwrap_or_else(|r| panic!("{dir}:\n{r}"));
        eprintln!("{dir}:\n{report}");
        assert!(builtin >= 18, "{dir}: {builtin} built-in resources");
        assert_eq!(got_custom, custom, "{dir}: custom resources checked");

        let list: Vec<serde_json::Value> =
            serde_json::from_slice(&std::fs::read(&containers).expect("containers")).expect("json");
        let workloads: BTreeSet<&str> =
            list.iter().filter_map(|c| c["workload"].as_str()).collect();
        assert_eq!(
            workloads,
            BTreeSet::from([
                "CronJob/veritrace-compact",
                "Deployment/veritrace-gateway",
                "Deployment/veritrace-serve",
                "StatefulSet/veritrace-process"
            ]),
            "{dir}"
        );
        for c in &list {
            let what = format!("{dir} {}", c["workload"]);
            let config = tmp.path().join("veritrace.toml");
            std::fs::write(
                &config,
                c["config"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{what}: no veritrace.toml mounted")),
            )
            .expect("config");
            let mut check = bin();
            check.arg("--config").arg(&config).args(["config", "check"]);
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with("VERITRACE_") {
                    check.env_remove(k);
                }
            }
            let env = c["env"].as_object().expect("env");
            for (k, v) in env {
                check.env(k, v.as_str().expect("string"));
            }
            let out = ok(&mut check);
            assert!(out.starts_with("configuration ok"), "{what}: {out}");
            // The arguments parse as the binary's own command line.
            let args: Vec<&str> = c["args"]
                .as_array()
                .expect("args")
                .iter()
                .map(|a| a.as_str().expect("arg"))
                .collect();
            ok(bin().args(&args).arg("--help"));
            assert!(
                c["image"]
                    .as_str()
                    .is_some_and(|i| i.starts_with("veritrace:")),
                "{what}: image {}",
                c["image"]
            );
            // Every listener but the probes' own is reachable from other pods.
            if args[0] == "process" {
                assert_eq!(
                    env["VERITRACE__KAFKA__GROUP_INSTANCE_ID"], "veritrace-process-0",
                    "{what}"
                );
            }
        }
    }

    // The check can fail: a misspelt field, a custom resource of the wrong type.
    let rendered = tmp.path().join("rendered.yaml");
    kustomize("overlays/production", &rendered);
    let good = std::fs::read_to_string(&rendered).expect("rendered");
    for (from, to, expect) in [
        (
            "  replicas: 2\n",
            "  replica: 2\n",
            "'replica' was unexpected",
        ),
        (
            "  minReplicaCount: 3\n",
            "  minReplicaCount: three\n",
            "minReplicaCount must be integer",
        ),
        (
            "          runAsNonRoot: true\n",
            "          runAsNonRoot: false\n",
            "non-root",
        ),
    ] {
        assert!(good.contains(from), "{from:?}");
        std::fs::write(&rendered, good.replacen(from, to, 1)).expect("write");
        let report = validate(&rendered, &tmp.path().join("c.json"))
            .err()
            .unwrap_or_else(|| panic!("{to:?} passed"));
        assert!(report.contains(expect), "{to:?}:\n{report}");
    }
}

// ---------------------------------------------------------------------------------------
// Alerts and dashboard

const SCRAPE_LABELS: &[&str] = &[
    "namespace",
    "pod",
    "job",
    "instance",
    "service",
    "container",
    "endpoint",
];
/// Operators and aggregations (`sum by (x) (...)` puts the grouping before the parenthesis).
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
    "group_left",
    "group_right",
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
    "limitk",
    "limit_ratio",
];
const LIST_KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The metric names of a PromQL expression, with the label names each is matched on, and
/// the label names of its grouping clauses.
#[derive(Debug, Default)]
struct Names {
    metrics: BTreeMap<String, BTreeSet<String>>,
    grouping: BTreeSet<String>,
}

fn skip_quoted(b: &[u8], mut i: usize) -> usize {
    let q = b[i];
    i += 1;
    while i < b.len() && b[i] != q {
        i += if b[i] == b'\\' { 2 } else { 1 };
    }
    i + 1
}

fn ident_at(b: &[u8], i: usize) -> usize {
    let mut j = i;
    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] == b':') {
        j += 1;
    }
    j
}

fn promql_names(expr: &str) -> Names {
    let b = expr.as_bytes();
    let mut names = Names::default();
    let mut i = 0;
    let next_non_space = |mut j: usize| {
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        j
    };
    while i < b.len() {
        let c = b[i];
        if c == b'"' || c == b'\'' || c == b'`' {
            i = skip_quoted(b, i);
        } else if c == b'[' {
            while i < b.len() && b[i] != b']' {
                i += 1;
            }
            i += 1;
        } else if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            i = ident_at(b, i + 1).max(i + 1);
            while i < b.len() && (b[i] == b'.' || b[i].is_ascii_alphanumeric()) {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == b'_' || c == b':' {
            let end = ident_at(b, i);
            let word = &expr[i..end];
            let after = next_non_space(end);
            if LIST_KEYWORDS.contains(&word) && b.get(after) == Some(&b'(') {
                let close = expr[after..].find(')').map_or(b.len(), |p| after + p);
                names.grouping.extend(
                    expr[after + 1..close]
                        .split(',')
                        .map(|l| l.trim().to_string())
                        .filter(|l| !l.is_empty()),
                );
                i = close + 1;
            } else if b.get(after) == Some(&b'(') || KEYWORDS.contains(&word) {
                i = end; // a function, or an operator keyword
            } else {
                let labels = names.metrics.entry(word.to_string()).or_default();
                i = end;
                if b.get(after) == Some(&b'{') {
                    // label matchers: name op "value", ...
                    let mut j = after + 1;
                    while j < b.len() && b[j] != b'}' {
                        if b[j] == b'"' || b[j] == b'\'' || b[j] == b'`' {
                            j = skip_quoted(b, j);
                        } else if b[j].is_ascii_alphabetic() || b[j] == b'_' {
                            let e = ident_at(b, j);
                            labels.insert(expr[j..e].to_string());
                            j = e;
                        } else {
                            j += 1;
                        }
                    }
                    i = j + 1;
                }
            }
        } else if c == b'{' {
            // A selector without a metric name would match every series.
            panic!("a selector without a metric name in {expr}");
        } else {
            i += 1;
        }
    }
    names
}

/// Checks that an expression names only exported metrics (or Prometheus' `up`) and only
/// their labels; returns the exported metrics it names.
fn check_expr(expr: &str) -> BTreeSet<&'static str> {
    let names = promql_names(expr);
    let mut used = BTreeSet::new();
    let mut allowed: BTreeSet<&str> = SCRAPE_LABELS.iter().copied().collect();
    for (metric, labels) in &names.metrics {
        let spec = veritrace_metrics::spec(metric).or_else(|| {
            ["_bucket", "_sum", "_count"].iter().find_map(|s| {
                let base = metric.strip_suffix(s)?;
                veritrace_metrics::spec(base)
                    .filter(|s| s.kind == veritrace_metrics::Kind::Histogram)
            })
        });
        let metric_labels: BTreeSet<&str> = match spec {
            Some(s) => {
                used.insert(s.name);
                let mut l: BTreeSet<&str> = s.labels.iter().copied().collect();
                if metric.ends_with("_bucket") {
                    l.insert("le");
                }
                l
            }
            None if metric == "up" => BTreeSet::new(),
            None => panic!(
                "{metric} is not a metric Veritrace exports (deploy/METRICS.md), in:\n{expr}"
            ),
        };
        for l in labels {
            assert!(
                metric_labels.contains(l.as_str()) || SCRAPE_LABELS.contains(&l.as_str()),
                "{metric} has no label {l} (it has {metric_labels:?} and the scrape's {SCRAPE_LABELS:?}), in:\n{expr}"
            );
        }
        allowed.extend(metric_labels);
    }
    for l in &names.grouping {
        assert!(
            allowed.contains(l.as_str()),
            "grouping by {l}, which none of the metrics has, in:\n{expr}"
        );
    }
    used
}

#[test]
fn promql_names_finds_metrics_labels_and_groupings() {
    let n = promql_names(
        r#"sum by (namespace, reason) (rate(veritrace_rejected_records_total{reason=~"a|b",pod!="x"}[10m])) / on (namespace) group_left sum(up) > 0.05 and time() - veritrace_poll_loop_timestamp_seconds offset 5m > 1e3"#,
    );
    assert_eq!(
        n.metrics.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "up",
            "veritrace_poll_loop_timestamp_seconds",
            "veritrace_rejected_records_total"
        ]
    );
    assert_eq!(
        n.metrics["veritrace_rejected_records_total"],
        BTreeSet::from(["pod".to_string(), "reason".to_string()])
    );
    assert_eq!(
        n.grouping,
        BTreeSet::from(["namespace".to_string(), "reason".to_string()])
    );
    let caught = std::panic::catch_unwind(|| check_expr("sum(rate(veritrace_rejected_total[5m]))"));
    assert!(caught.is_err(), "an unknown metric must be refused");
    let caught =
        std::panic::catch_unwind(|| check_expr("sum by (topic) (veritrace_damaged_files)"));
    assert!(
        caught.is_err(),
        "a label the metric does not have must be refused"
    );
}

fn monitoring() -> PathBuf {
    root().join("deploy/kubernetes/components/monitoring")
}

#[test]
fn the_alerts_parse_name_exported_metrics_pass_their_unit_tests_and_have_a_runbook() {
    let promtool = promtool();
    let tmp = tempfile::tempdir().expect("tmp");
    let rules = tmp.path().join("rules.yaml");
    ok(Command::new(python())
        .arg(validator())
        .arg("rules")
        .arg(monitoring().join("alerts.yaml"))
        .arg(&rules));
    let checked = ok(Command::new(&promtool).args(["check", "rules"]).arg(&rules));
    assert!(checked.contains("SUCCESS"), "{checked}");
    std::fs::copy(
        monitoring().join("alerts-test.yaml"),
        tmp.path().join("alerts-test.yaml"),
    )
    .expect("copy tests");
    let tested = ok(Command::new(&promtool).current_dir(tmp.path()).args([
        "test",
        "rules",
        "alerts-test.yaml",
    ]));
    assert!(tested.contains("SUCCESS"), "{tested}");

    // Each alert: exported metrics only, a unit test, a runbook entry.
    let tests = std::fs::read_to_string(monitoring().join("alerts-test.yaml")).expect("tests");
    let readme = std::fs::read_to_string(root().join("deploy/README.md")).expect("README");
    let parsed: serde_json::Value = serde_json::from_str(&ok(Command::new(python())
        .args([
            "-c",
            "import sys, json, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)",
        ])
        .arg(&rules)))
    .expect("rules as JSON");
    let mut alerts = 0;
    for group in parsed["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let name = rule["alert"].as_str().expect("alert name");
            check_expr(rule["expr"].as_str().expect("expr"));
            assert!(
                tests.contains(&format!("alertname: {name}\n")),
                "{name} has no unit test in alerts-test.yaml"
            );
            assert!(
                readme
                    .lines()
                    .any(|l| l.starts_with('#') && l.trim_start_matches('#').trim() == name),
                "{name} has no runbook section in deploy/README.md"
            );
            assert_eq!(
                rule["annotations"]["runbook"].as_str(),
                Some(format!("deploy/README.md#{}", name.to_lowercase()).as_str())
            );
            alerts += 1;
        }
    }
    assert!(alerts >= 10, "{alerts} alerts");
}

#[test]
fn every_dashboard_panel_parses_and_names_exported_metrics_only() {
    let promtool = promtool();
    let tmp = tempfile::tempdir().expect("tmp");
    let rules = tmp.path().join("dashboard-rules.yaml");
    let exprs = ok(Command::new(python())
        .arg(validator())
        .arg("dashboard")
        .arg(monitoring().join("dashboard.json"))
        .arg(&rules));
    let checked = ok(Command::new(&promtool).args(["check", "rules"]).arg(&rules));
    assert!(checked.contains("SUCCESS"), "{checked}");
    let mut shown = BTreeSet::new();
    for e in exprs.lines() {
        shown.extend(check_expr(e));
    }
    // Every metric Veritrace exports has a panel.
    let missing: Vec<&str> = veritrace_metrics::CATALOG
        .iter()
        .map(|s| s.name)
        .filter(|n| !shown.contains(n))
        .collect();
    assert!(missing.is_empty(), "no dashboard panel shows {missing:?}");
}
