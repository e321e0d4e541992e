"""A stand-in for the Kubernetes API server, enough for `helm install` to run against it.

It answers discovery (/version, /api, /apis and each group version) for the kinds the chart
renders, says 404 to every GET of a single object, returns empty lists, and accepts every
create, keeping the objects it was sent. No cluster can run on our machines; this lets the
real Helm (embedded in helm-sdkpy) render, validate values and "apply" the chart, and hands
the objects it sent to the caller.
"""

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KUBE_VERSION = (1, 35, 0)

# group/version -> [(plural, kind, namespaced)]
RESOURCES = {
    "v1": [
        ("namespaces", "Namespace", False),
        ("serviceaccounts", "ServiceAccount", True),
        ("services", "Service", True),
        ("configmaps", "ConfigMap", True),
        ("secrets", "Secret", True),
        ("pods", "Pod", True),
        ("persistentvolumeclaims", "PersistentVolumeClaim", True),
    ],
    "apps/v1": [("deployments", "Deployment", True), ("statefulsets", "StatefulSet", True)],
    "rbac.authorization.k8s.io/v1": [
        ("roles", "Role", True),
        ("rolebindings", "RoleBinding", True),
        ("clusterroles", "ClusterRole", False),
        ("clusterrolebindings", "ClusterRoleBinding", False),
    ],
    "apiextensions.k8s.io/v1": [
        ("customresourcedefinitions", "CustomResourceDefinition", False)
    ],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    "networking.k8s.io/v1": [("networkpolicies", "NetworkPolicy", True)],
    "coordination.k8s.io/v1": [("leases", "Lease", True)],
    "events.k8s.io/v1": [("events", "Event", True)],
    "monitoring.coreos.com/v1": [
        ("servicemonitors", "ServiceMonitor", True),
        ("podmonitors", "PodMonitor", True),
        ("prometheusrules", "PrometheusRule", True),
    ],
    "fdfs.dev/v1alpha1": [
        ("fdfsclusters", "FdfsCluster", True),
        ("storagegroups", "StorageGroup", True),
    ],
}
VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


def _discovery(path):
    major, minor, patch = KUBE_VERSION
    if path == "/version":
        return {
            "major": str(major),
            "minor": str(minor),
            "gitVersion": f"v{major}.{minor}.{patch}",
            "platform": "linux/amd64",
        }
    if path == "/api":
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}
            ],
        }
    if path == "/apis":
        groups = []
        for gv in RESOURCES:
            if "/" not in gv:
                continue
            group, version = gv.split("/")
            ver = {"groupVersion": gv, "version": version}
            groups.append(
                {"name": group, "versions": [ver], "preferredVersion": ver}
            )
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
    gv = path[len("/api/"):] if path.startswith("/api/") else path[len("/apis/"):]
    if gv in RESOURCES:
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": gv,
            "resources": [
                {
                    "name": plural,
                    "singularName": kind.lower(),
                    "namespaced": namespaced,
                    "kind": kind,
                    "verbs": VERBS,
                }
                for plural, kind, namespaced in RESOURCES[gv]
            ],
        }
    return None


class FakeApiServer:
    """Runs on 127.0.0.1 on a free port; `created` holds every object POSTed."""

    def __init__(self):
        self.created = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _not_found(self):
                self._send(
                    404,
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "status": "Failure",
                        "reason": "NotFound",
                        "code": 404,
                        "message": f"{self.path} not found",
                    },
                )

            def do_GET(self):
                path = self.path.split("?")[0].rstrip("/")
                body = _discovery(path)
                if body is not None:
                    return self._send(200, body)
                parts = path.strip("/").split("/")
                # .../namespaces/NS/PLURAL or .../PLURAL: a list; anything longer: one object.
                head = 2 if parts[0] == "api" else 3
                rest = parts[head:]
                if rest[:1] == ["namespaces"] and len(rest) >= 3:
                    rest = rest[2:]
                if len(rest) == 1:
                    return self._send(200, {"kind": "List", "apiVersion": "v1", "items": [],
                                            "metadata": {"resourceVersion": "1"}})
                return self._not_found()

            def _echo(self, code, raw):
                # Helm keeps its release records in Secrets, sent as protobuf: hand them back
                # as they came, which is what a real server stores.
                self.send_response(code)
                self.send_header("Content-Type", self.headers.get("Content-Type"))
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if "json" not in (self.headers.get("Content-Type") or ""):
                    return self._echo(201, raw)
                obj = json.loads(raw or b"{}")
                meta = obj.setdefault("metadata", {})
                meta.setdefault("uid", str(uuid.uuid4()))
                meta.setdefault("resourceVersion", "1")
                meta.setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
                with server.lock:
                    server.created.append(obj)
                self._send(201, obj)

            def do_PUT(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self._echo(200, raw)

            def do_DELETE(self):
                self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()

    def take(self):
        with self.lock:
            out, self.created = self.created, []
        return out

    def kubeconfig(self, path):
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}],
            "users": [{"name": "fake", "user": {"token": "fake"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
            "current-context": "fake",
        }
        with open(path, "w") as f:
            json.dump(config, f)
        return path
