"""Checks the fdfs-operator chart with the real Helm (embedded in helm-sdkpy).

- files/crds/ holds byte-identical copies of the repository's crds/;
- `helm lint` reports no warning or error;
- for each documented values combination (charts/fdfs-operator/ci/*-values.yaml) Helm installs
  the chart against a stand-in API server (fake_apiserver.py); every manifest it renders is
  validated with kubernetes-validate in strict mode, and checked for what the chart promises
  (hardened Pods, probes, RBAC scope, CRDs equal to crds/, the operator's flags);
- values with a wrong type, an unknown key, a bad enum or an impossible combination are
  refused, with a message naming the value;
- the Grafana dashboard queries only metrics the code registers.

Prints one line per check and `N passed, N failed`; exits 1 on any failure.
"""

import argparse
import asyncio
import copy
import functools
import json
import os
import re
import sys
import tempfile
import traceback
from pathlib import Path

# Helm reads this when the configuration is created: release records stay in memory.
os.environ.setdefault("HELM_DRIVER", "memory")

import helm_sdkpy as helm  # noqa: E402
import yaml  # noqa: E402
from kubernetes_validate import utils as kv  # noqa: E402

from fake_apiserver import FakeApiServer  # noqa: E402

kv.schema_contents = functools.lru_cache(maxsize=None)(kv.schema_contents)

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "fdfs-operator"
K8S_VERSION = os.environ.get("K8S_VERSION", "1.35.0")
NAMESPACE = "fdfs-system"
# Kinds of other projects' CRDs: no schema is available here, so they are only parsed and
# checked by the assertions below.
FOREIGN_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def ok(self, name):
        self.passed += 1
        print(f"ok   {name}")

    def fail(self, name, why):
        self.failed += 1
        print(f"FAIL {name}: {why}")

    def check(self, name, condition, why=""):
        if condition:
            self.ok(name)
        else:
            self.fail(name, why or "condition is false")
        return condition


def binary_env_vars():
    """Environment variables the operator binary reads (its clap `env = "..."` attributes)."""
    src = (REPO / "operator" / "src" / "bin" / "fdfs-operator.rs").read_text()
    return set(re.findall(r'env\s*=\s*"([A-Z_]+)"', src))


def registered_metrics():
    """{registry prefix: {full metric names}} from the Rust sources of this tree."""
    found = {}
    for path in list((REPO / "node" / "src").rglob("*.rs")) + list((REPO / "operator" / "src").rglob("*.rs")):
        text = path.read_text()
        prefixes = re.findall(r'with_prefix\(\s*"([a-z_]+)"\s*\)', text)
        if not prefixes:
            continue
        names = re.findall(r'register\(\s*"([a-z_]+)"', text)
        for prefix in prefixes:
            found.setdefault(prefix, set()).update(f"{prefix}_{n}" for n in names)
    return found


def install(config, release, values, skip_schema=False):
    return asyncio.run(
        helm.Install(config).run(
            release,
            str(CHART),
            values=values,
            wait=False,
            timeout=60,
            skip_schema_validation=skip_schema,
        )
    )


def validate_doc(doc):
    """None when valid, else why not."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in FOREIGN_KINDS:
        return None
    try:
        kv.validate(doc, K8S_VERSION, strict=True)
    except kv.SchemaNotFoundError as e:
        return e.message
    except Exception as e:  # jsonschema.ValidationError and friends
        path = ".".join(str(p) for p in getattr(e, "absolute_path", []))
        return f"{path}: {getattr(e, 'message', e)}"
    return None


def by_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def check_operator_pod(c, case, deploy, values):
    spec = deploy["spec"]["template"]["spec"]
    container = spec["containers"][0]
    sc = container["securityContext"]
    psc = spec["securityContext"]
    c.check(
        f"{case}: hardened security context",
        psc.get("runAsNonRoot") is True
        and psc.get("seccompProfile", {}).get("type") == "RuntimeDefault"
        and sc.get("readOnlyRootFilesystem") is True
        and sc.get("allowPrivilegeEscalation") is False
        and sc.get("capabilities", {}).get("drop") == ["ALL"]
        and sc.get("seccompProfile", {}).get("type") == "RuntimeDefault"
        and sc.get("runAsNonRoot") is True,
        f"{psc} {sc}",
    )
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    probes = [container.get("livenessProbe", {}), container.get("readinessProbe", {})]
    c.check(
        f"{case}: probes on /healthz of the metrics port",
        all(p.get("httpGet", {}).get("path") == "/healthz" and p["httpGet"]["port"] == "metrics" for p in probes)
        and "metrics" in ports,
        f"{probes} {ports}",
    )
    env = {e["name"]: e for e in container["env"]}
    known = binary_env_vars() | {"RUST_LOG"}
    unknown = sorted(set(env) - known)
    c.check(f"{case}: every env var is one the operator reads", not unknown, f"unknown {unknown}; the binary reads {sorted(known)}")
    listen = env.get("FDFS_OPERATOR_LISTEN", {}).get("value", "")
    c.check(
        f"{case}: the operator listens on the metrics port",
        listen == f"0.0.0.0:{ports.get('metrics')}",
        f"{listen} vs {ports}",
    )
    c.check(
        f"{case}: POD_NAME and POD_NAMESPACE come from the downward API",
        env.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name"
        and env.get("POD_NAMESPACE", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace",
    )
    election = values.get("leaderElection", {}).get("enabled", True)
    c.check(
        f"{case}: leader election {'on' if election else 'off'}",
        ("FDFS_NO_LEADER_ELECTION" in env) != election and (("FDFS_LEASE_NAME" in env) == election),
        str(sorted(env)),
    )
    watch = values.get("watchNamespaces", [])
    c.check(
        f"{case}: watched namespaces",
        env.get("FDFS_WATCH_NAMESPACES", {}).get("value", "") == ",".join(watch),
    )
    image = container["image"]
    repo = values["image"]["repository"]
    tag = values["image"].get("tag") or yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    c.check(f"{case}: image {image}", image.startswith(f"{repo}:{tag}"), image)
    replicas = deploy["spec"]["replicas"]
    c.check(f"{case}: replicas", replicas == values.get("replicaCount", 2), str(replicas))
    anti = values.get("podAntiAffinity", "soft")
    affinity = spec.get("affinity", {}).get("podAntiAffinity", {})
    expected = {
        "soft": "preferredDuringSchedulingIgnoredDuringExecution",
        "hard": "requiredDuringSchedulingIgnoredDuringExecution",
        "none": None,
    }[anti]
    c.check(
        f"{case}: pod anti-affinity {anti}",
        (expected in affinity) if expected else not affinity,
        json.dumps(affinity),
    )


def operator_binary():
    """The fdfs-operator binary of this tree, if one was built (debug, for the target triple
    CARGO_BUILD_TARGET names when set, or the static release images/build.sh makes)."""
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    triple = os.environ.get("CARGO_BUILD_TARGET")
    debug = target / triple / "debug" if triple else target / "debug"
    for path in (debug / "fdfs-operator",
                 target / "x86_64-unknown-linux-gnu" / "release" / "fdfs-operator"):
        if path.is_file():
            return path
    return None


def check_operator_accepts_env(c, case, deploy):
    """Starts the operator binary with the Deployment's environment: it must get past its
    flags and stop only at connecting to the Kubernetes API (there is none here)."""
    import subprocess

    binary = operator_binary()
    if binary is None:
        print(f"skip {case}: no fdfs-operator binary built, its flags are not tried")
        return
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    env = {"HOME": "/nonexistent", "PATH": "/usr/bin:/bin", "RUST_BACKTRACE": "0"}
    for e in container["env"]:
        field = e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        env[e["name"]] = e.get("value") if field is None else f"{case}-{field.split('.')[-1]}"
    proc = subprocess.run([str(binary)], env=env, capture_output=True, text=True, timeout=30)
    c.check(f"{case}: {binary.name} accepts the Deployment's environment",
            proc.returncode == 1 and "connecting to the Kubernetes API" in proc.stderr,
            f"exit {proc.returncode}: {proc.stderr[-800:]}")


def check_rbac(c, case, docs, values):
    if not values.get("rbac", {}).get("create", True):
        c.check(f"{case}: no RBAC objects", not [d for d in docs if d["apiVersion"].startswith("rbac.")])
        return
    scope = values.get("rbac", {}).get("scope", "cluster")
    cluster_roles = by_kind(docs, "ClusterRole")
    roles = {(d["metadata"]["namespace"], d["metadata"]["name"]): d for d in by_kind(docs, "Role")}
    bindings = by_kind(docs, "RoleBinding") + by_kind(docs, "ClusterRoleBinding")
    if scope == "cluster":
        c.check(f"{case}: one ClusterRole", len(cluster_roles) == 1, str(len(cluster_roles)))
        rules = cluster_roles[0]["rules"] if cluster_roles else []
    else:
        c.check(f"{case}: nothing cluster-wide in namespaced mode", not cluster_roles and not by_kind(docs, "ClusterRoleBinding"))
        watched = values["watchNamespaces"]
        have = sorted(ns for ns, name in roles if not name.endswith("-leader-election"))
        c.check(f"{case}: a Role in each watched namespace", have == sorted(watched), f"{have} vs {watched}")
        rules = next((r["rules"] for (ns, name), r in roles.items() if not name.endswith("-leader-election")), [])
    verbs = {}
    for rule in rules:
        for group in rule["apiGroups"]:
            for res in rule["resources"]:
                verbs.setdefault((group, res), set()).update(rule["verbs"])
    c.check(f"{case}: no wildcard in RBAC", not any("*" in v or "*" in k[0] or "*" in k[1] for k, v in verbs.items()))
    c.check(
        f"{case}: Secrets only read by name (the HTTP token's hash), never listed or watched",
        verbs.get(("", "secrets")) == {"get"},
        str(verbs.get(("", "secrets"))),
    )
    c.check(
        f"{case}: Services deleted only as the operator's own (outside Services no longer wanted)",
        verbs.get(("", "services")) == {"get", "list", "watch", "create", "patch", "delete"},
        str(verbs.get(("", "services"))),
    )
    c.check(
        f"{case}: claims only listed, patched (volume growth) and deleted (member replacement)",
        verbs.get(("", "persistentvolumeclaims")) == {"list", "patch", "delete"},
        str(verbs.get(("", "persistentvolumeclaims"))),
    )
    c.check(
        f"{case}: status via patch, CRs read-only",
        verbs.get(("fdfs.dev", "fdfsclusters")) == {"get", "list", "watch"}
        and verbs.get(("fdfs.dev", "storagegroups/status")) == {"get", "patch"},
        str(verbs),
    )
    election = values.get("leaderElection", {}).get("enabled", True)
    lease_role = [r for (ns, name), r in roles.items() if name.endswith("-leader-election")]
    c.check(
        f"{case}: leader-election Role {'present' if election else 'absent'} in the release namespace",
        (len(lease_role) == 1 and lease_role[0]["metadata"]["namespace"] == NAMESPACE) if election else not lease_role,
    )
    c.check(f"{case}: every binding names the ServiceAccount", all(b["subjects"][0]["namespace"] == NAMESPACE for b in bindings))


def check_crds(c, case, docs, values):
    rendered = {d["metadata"]["name"]: d for d in by_kind(docs, "CustomResourceDefinition")}
    if not values.get("crds", {}).get("install", True):
        c.check(f"{case}: no CRDs", not rendered)
        return
    keep = values.get("crds", {}).get("keep", True)
    for path in sorted((REPO / "crds").glob("*.yaml")):
        source = yaml.safe_load(path.read_text())
        name = source["metadata"]["name"]
        got = copy.deepcopy(rendered.get(name))
        if got is None:
            c.fail(f"{case}: CRD {name}", "not rendered")
            continue
        annotations = got["metadata"].pop("annotations", {})
        c.check(
            f"{case}: CRD {name} keep annotation",
            (annotations == {"helm.sh/resource-policy": "keep"}) if keep else not annotations,
            str(annotations),
        )
        c.check(f"{case}: CRD {name} equals crds/{path.name}", got == source)


def check_case(c, config, case, values_file):
    values = yaml.safe_load(values_file.read_text()) or {}
    release = re.sub(r"[^a-z0-9-]", "-", case)
    try:
        result = install(config, release, values)
    except helm.HelmError as e:
        c.fail(f"{case}: helm install", str(e))
        return None
    c.ok(f"{case}: helm install")
    manifest = result["manifest"]
    docs = [d for d in yaml.safe_load_all(manifest) if d]
    for doc in docs:
        why = validate_doc(doc)
        name = f"{case}: valid {doc['kind']}/{doc['metadata']['name']}"
        if (doc.get("apiVersion"), doc.get("kind")) in FOREIGN_KINDS:
            name += " (parsed only: no schema for this CRD here)"
        c.check(name, why is None, why)
    deploys = by_kind(docs, "Deployment")
    if c.check(f"{case}: one Deployment", len(deploys) == 1):
        check_operator_pod(c, case, deploys[0], values)
        check_operator_accepts_env(c, case, deploys[0])
    check_rbac(c, case, docs, values)
    check_crds(c, case, docs, values)
    metrics = values.get("metrics", {})
    for kind, key in (
        ("ServiceMonitor", "serviceMonitor"),
        ("PodMonitor", "nodePodMonitor"),
        ("PrometheusRule", "prometheusRule"),
    ):
        enabled = metrics.get(key, {}).get("enabled", False)
        c.check(f"{case}: {kind} {'present' if enabled else 'absent'}", len(by_kind(docs, kind)) == int(enabled))
    for rule in by_kind(docs, "PrometheusRule"):
        shipped = yaml.safe_load((CHART / "files" / "alerts" / "fdfs-rules.yaml").read_text())
        c.check(f"{case}: PrometheusRule carries files/alerts/fdfs-rules.yaml", rule["spec"] == shipped)
        alerts = [r for g in rule["spec"]["groups"] for r in g["rules"]]
        c.check(
            f"{case}: every alert has an expression, a duration, a severity and a summary",
            alerts and all(r.get("expr") and r.get("for") and r.get("labels", {}).get("severity")
                           and r.get("annotations", {}).get("summary") for r in alerts),
        )
    dashboard = values.get("grafanaDashboard", {}).get("enabled", False)
    maps = [d for d in by_kind(docs, "ConfigMap") if "fdfs.json" in d.get("data", {})]
    if c.check(f"{case}: dashboard {'present' if dashboard else 'absent'}", len(maps) == int(dashboard)) and maps:
        json.loads(maps[0]["data"]["fdfs.json"])
        c.ok(f"{case}: dashboard JSON parses")
    netpol = values.get("networkPolicy", {}).get("enabled", False)
    c.check(f"{case}: NetworkPolicy {'present' if netpol else 'absent'}", len(by_kind(docs, "NetworkPolicy")) == int(netpol))
    notes = result.get("info", {}).get("notes", "")
    c.check(f"{case}: NOTES tell what to apply next", "examples/cluster.yaml" in notes and "kubectl" in notes, notes)
    return manifest


# (name, values, skip schema validation, text the refusal must contain)
REFUSALS = [
    ("no image repository", {}, False, "image.repository is required"),
    ("replicaCount of the wrong type", {"replicaCount": "two"}, False, "replicaCount"),
    ("unknown top-level key", {"replicas": 2}, False, "replicas"),
    ("unknown nested key", {"image": {"repo": "x"}}, False, "repo"),
    ("pullPolicy outside its enum", {"image": {"pullPolicy": "Sometimes"}}, False, "pullPolicy"),
    ("logFormat outside its enum", {"operator": {"logFormat": "xml"}}, False, "logFormat"),
    ("rbac.scope outside its enum", {"rbac": {"scope": "global"}}, False, "scope"),
    ("leader election off with 2 replicas (schema)",
     {"leaderElection": {"enabled": False}, "replicaCount": 2}, False, "replicaCount"),
    ("leader election off with 2 replicas (template)",
     {"leaderElection": {"enabled": False}, "replicaCount": 2}, True,
     "replicaCount is 2 but leaderElection.enabled is false"),
    ("namespaced RBAC without namespaces (schema)", {"rbac": {"scope": "namespaced"}}, False, "watchNamespaces"),
    ("namespaced RBAC without namespaces (template)", {"rbac": {"scope": "namespaced"}}, True,
     "rbac.scope is namespaced but watchNamespaces is empty"),
    ("ServiceMonitor without its Service (template)",
     {"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}}, True,
     "metrics.serviceMonitor.enabled needs metrics.service.enabled"),
]


def check_refusals(c, config):
    base = {"image": {"repository": "registry.example.com/fdfs/fdfs-operator"}}
    for i, (name, values, skip, expect) in enumerate(REFUSALS):
        merged = values if name == "no image repository" else deep_merge(base, values)
        try:
            install(config, f"refused-{i}", merged, skip_schema=skip)
        except helm.HelmError as e:
            c.check(f"refused: {name}", expect in str(e), f"message does not contain {expect!r}: {e}")
            print(f"     helm: {str(e).strip().splitlines()[-1][:200]}")
            continue
        c.fail(f"refused: {name}", "helm installed it")


def deep_merge(a, b):
    out = copy.deepcopy(a)
    for k, v in b.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def check_crd_copies(c):
    ours = sorted(p.name for p in (CHART / "files" / "crds").glob("*.yaml"))
    theirs = sorted(p.name for p in (REPO / "crds").glob("*.yaml"))
    c.check("chart CRDs: same files as crds/", ours == theirs, f"{ours} vs {theirs}")
    for name in theirs:
        a = (REPO / "crds" / name).read_bytes()
        b = (CHART / "files" / "crds" / name).read_bytes() if (CHART / "files" / "crds" / name).exists() else b""
        c.check(f"chart CRDs: files/crds/{name} is byte-identical to crds/{name}", a == b,
                "run: cargo run -p fdfs-operator --bin crdgen")


def check_dashboard_metrics(c):
    text = (CHART / "files" / "dashboards" / "fdfs.json").read_text()
    dashboard = json.loads(text)
    exprs = []

    def walk(node):
        if isinstance(node, dict):
            if "expr" in node:
                exprs.append(node["expr"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(dashboard)
    walk(dashboard.get("templating", {}))
    used = set()
    for expr in exprs + [v.get("definition", "") for v in dashboard["templating"]["list"]]:
        used.update(re.findall(r"\b(fdfs_(?:storage|tracker|operator)_[a-z_]+)", expr))
    registries = registered_metrics()
    for metric in sorted(used):
        base = re.sub(r"_(total|bucket|count|sum)$", "", metric)
        prefix = next((p for p in registries if base.startswith(p + "_")), None)
        if prefix is None:
            family = "_".join(metric.split("_")[:2])
            print(f"skip dashboard metric {metric}: the {family} registry is not in this tree")
            continue
        c.check(f"dashboard metric {metric} is registered", base in registries[prefix],
                f"{prefix} registers {sorted(registries[prefix])}")


def check_examples(c):
    """Each example, and the kustomization as kubectl builds it, against the official schemas
    and the CRDs (custom resources strictly, as operator/tests/validate_manifests.py does)."""
    import subprocess

    import jsonschema

    sys.path.insert(0, str(REPO / "operator" / "tests"))
    from validate_manifests import load_crds

    crds = load_crds(REPO / "crds")

    def check_docs(source, docs):
        for doc in docs:
            name = f"{source}: valid {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            schema = crds.get((doc.get("apiVersion"), doc.get("kind")))
            if schema is None:
                why = validate_doc(doc)
                c.check(name, why is None, why)
                continue
            try:
                jsonschema.Draft202012Validator(schema).validate(doc)
                c.ok(name)
            except jsonschema.ValidationError as e:
                c.fail(name, f"{'.'.join(str(p) for p in e.absolute_path)}: {e.message}")

    examples = REPO / "examples"
    for path in sorted(examples.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        check_docs(f"examples/{path.name}", [d for d in yaml.safe_load_all(path.read_text()) if d])
    built = subprocess.run(["kubectl", "kustomize", str(examples)], capture_output=True, text=True)
    if c.check("kubectl kustomize examples/", built.returncode == 0, built.stderr):
        docs = [d for d in yaml.safe_load_all(built.stdout) if d]
        check_docs("kustomize examples/", docs)
        c.check(
            "kustomize examples/: everything in namespace fdfs",
            all(d["metadata"].get("namespace") == "fdfs" for d in docs if d["kind"] != "Namespace"),
        )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", help="directory to write each case's rendered manifest to")
    args = parser.parse_args()
    out = Path(args.out) if args.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)

    c = Checks()
    check_crd_copies(c)
    check_dashboard_metrics(c)
    check_examples(c)
    with FakeApiServer() as api, tempfile.TemporaryDirectory() as tmp:
        config = helm.Configuration(namespace=NAMESPACE, kubeconfig=api.kubeconfig(f"{tmp}/kubeconfig"))
        lint = asyncio.run(helm.Lint(config).run(str(CHART)))
        # helm-sdkpy returns lint messages without their text; severity 2 is a warning, 3 an error.
        bad = [m for m in lint.get("Messages") or [] if m.get("Severity", 0) >= 2]
        c.check("helm lint: no warnings or errors", not bad and not lint.get("Errors"), json.dumps(lint))
        for values_file in sorted((CHART / "ci").glob("*-values.yaml")):
            case = values_file.name.removesuffix("-values.yaml")
            try:
                manifest = check_case(c, config, case, values_file)
            except Exception:
                c.fail(f"{case}", traceback.format_exc())
                continue
            if out and manifest is not None:
                (out / f"{case}.yaml").write_text(manifest)
        check_refusals(c, config)
    print(f"{c.passed} passed, {c.failed} failed")
    return 1 if c.failed or not c.passed else 0


if __name__ == "__main__":
    sys.exit(main())
