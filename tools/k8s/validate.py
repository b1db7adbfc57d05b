"""Offline checks of deploy/kubernetes, run by `cargo test --test deploy`.

python validate.py manifests RENDERED.yaml VERSION CONTAINERS.json
    Built-in kinds are checked with kubernetes-validate in strict mode (unknown fields are
    errors) against the pinned Kubernetes VERSION; custom resources (monitoring.coreos.com,
    keda.sh) with validators generated from their CRDs (validate-crs.mjs, node). Then the
    policies every Veritrace workload keeps (non-root, read-only root file system, resources,
    probes). Prints one line per resource and a summary `validated: N built-in, M custom`;
    exits 1 when anything fails. Writes each container's arguments, environment and
    configuration file to CONTAINERS.json, for the test to run the binary with them.
python validate.py rules PROMETHEUSRULE.yaml OUT.yaml
    Writes the rule groups of a PrometheusRule as a Prometheus rule file (for promtool).
python validate.py dashboard DASHBOARD.json OUT.yaml
    Writes every panel's expression as a recording rule (for `promtool check rules`), with
    Grafana's variables replaced by values; prints the expressions, one per line.
"""

import json
import os
import subprocess
import sys
import tempfile

import kubernetes_validate
import yaml

CUSTOM_GROUPS = ("monitoring.coreos.com/", "keda.sh/")


def manifests(path: str, version: str, containers_out: str) -> int:
    with open(path, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    builtin = [d for d in docs if not str(d.get("apiVersion", "")).startswith(CUSTOM_GROUPS)]
    custom = [d for d in docs if str(d.get("apiVersion", "")).startswith(CUSTOM_GROUPS)]
    failed = 0
    for d in builtin:
        name = f"{d.get('kind')}/{d.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(d, version, strict=True)
            print(f"ok   {name} ({d.get('apiVersion')})")
        except kubernetes_validate.ValidationError as e:
            print(f"FAIL {name}: {e.message} at {'.'.join(str(p) for p in e.path)}")
            failed += 1
        except Exception as e:  # a kind without a schema, a version not bundled
            print(f"FAIL {name}: {e}")
            failed += 1
    if custom:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(custom, f)
        try:
            here = os.path.dirname(os.path.abspath(__file__))
            node = os.environ.get("NODE", "node")
            r = subprocess.run([node, os.path.join(here, "validate-crs.mjs"), f.name])
            failed += r.returncode != 0
        finally:
            os.unlink(f.name)
    problems = policies(docs)
    for p in problems:
        print(f"FAIL policy: {p}")
    with open(containers_out, "w", encoding="utf-8") as f:
        json.dump(containers(docs), f, indent=1)
    print(f"validated: {len(builtin)} built-in, {len(custom)} custom")
    return 1 if failed or problems else 0


def pod_specs(docs):
    """(workload name, kind, pod spec) of every workload."""
    for d in docs:
        kind, spec = d.get("kind"), d.get("spec", {})
        if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield d["metadata"]["name"], kind, spec["template"]["spec"]
        elif kind == "CronJob":
            yield d["metadata"]["name"], kind, spec["jobTemplate"]["spec"]["template"]["spec"]


def policies(docs):
    problems = []
    for name, kind, pod in pod_specs(docs):
        sc = pod.get("securityContext", {})
        if sc.get("runAsNonRoot") is not True or not sc.get("runAsUser"):
            problems.append(f"{kind}/{name}: the pod must run as a non-root numeric user")
        if pod.get("automountServiceAccountToken") is not False:
            problems.append(f"{kind}/{name}: no service account token (Veritrace calls no Kubernetes API)")
        for c in pod.get("containers", []):
            where = f"{kind}/{name} container {c['name']}"
            csc = c.get("securityContext", {})
            if csc.get("readOnlyRootFilesystem") is not True or csc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: read-only root file system, no privilege escalation")
            if csc.get("capabilities", {}).get("drop") != ["ALL"]:
                problems.append(f"{where}: must drop all capabilities")
            res = c.get("resources", {})
            for need in ("requests.cpu", "requests.memory", "limits.memory"):
                a, b = need.split(".")
                if b not in res.get(a, {}):
                    problems.append(f"{where}: resources.{need} is not set")
            if kind != "CronJob" and kind != "Job":
                live = c.get("livenessProbe", {}).get("httpGet", {}).get("path")
                ready = c.get("readinessProbe", {}).get("httpGet", {}).get("path")
                if (live, ready) != ("/livez", "/readyz"):
                    problems.append(f"{where}: liveness must probe /livez and readiness /readyz, not {live} and {ready}")
    return problems


def containers(docs):
    """Each container's args, environment (ConfigMap references and field references
    resolved) and the veritrace.toml its pod mounts."""
    maps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d.get("kind") == "ConfigMap"}
    out = []
    for name, kind, pod in pod_specs(docs):
        config = None
        for v in pod.get("volumes", []):
            if "configMap" in v:
                config = maps.get(v["configMap"]["name"], {}).get("veritrace.toml")
        for c in pod.get("containers", []):
            env = {}
            for ref in c.get("envFrom", []):
                m = ref.get("configMapRef", {}).get("name")
                if m not in maps:
                    raise SystemExit(f"{kind}/{name}: envFrom names ConfigMap {m}, which is not rendered")
                env.update(maps[m])
            for e in c.get("env", []):
                if "value" in e:
                    env[e["name"]] = e["value"]
                elif "fieldRef" in e.get("valueFrom", {}):
                    env[e["name"]] = f"{name}-0"
            out.append({"workload": f"{kind}/{name}", "container": c["name"], "image": c.get("image"),
                        "args": c.get("args", []), "env": env, "config": config})
    return out


def rules(path: str, out: str) -> int:
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    if doc.get("kind") != "PrometheusRule":
        raise SystemExit(f"{path} is not a PrometheusRule")
    with open(out, "w", encoding="utf-8") as f:
        yaml.safe_dump({"groups": doc["spec"]["groups"]}, f, sort_keys=False)
    return 0


def dashboard(path: str, out: str) -> int:
    with open(path, encoding="utf-8") as f:
        dash = json.load(f)
    exprs = []
    for p in dash["panels"]:
        for t in p.get("targets", []):
            exprs.append((p["title"], t["expr"]))
    if not exprs:
        raise SystemExit(f"{path} has no panel expressions")
    # Grafana's variables, as Grafana would substitute them.
    subst = {"$__rate_interval": "1m", "$__interval": "1m", "$namespace": "veritrace"}
    rules = []
    for i, (title, e) in enumerate(exprs):
        for k, v in subst.items():
            e = e.replace(k, v)
        if "$" in e:
            raise SystemExit(f"panel {title!r}: unknown variable in {e}")
        rules.append({"record": f"dashboard:panel_{i}", "expr": e})
        print(e)
    with open(out, "w", encoding="utf-8") as f:
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f, sort_keys=False)
    return 0


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    sys.exit({"manifests": manifests, "rules": rules, "dashboard": dashboard}[cmd](*args))
