"""Strict schema validation of Kubernetes manifests.

Built-in kinds are checked with kubernetes-validate against the official schemas of the given
Kubernetes version, in strict mode (unknown fields are errors). Custom resources of the CRDs
found in --crds are checked against the CRD's openAPIV3Schema, strictly as the API server
prunes: a field the schema does not declare is an error. A document whose kind has no schema
is an error too. CEL rules are checked by the Rust tests, not here.
"""

import argparse
import copy
import functools
import sys
from pathlib import Path

import jsonschema
import yaml
from kubernetes_validate import utils

# Every document loads the same large definitions file; read it once.
utils.schema_contents = functools.lru_cache(maxsize=None)(utils.schema_contents)


def to_json_schema(node):
    """OpenAPI v3 structural schema (as in a CRD) -> strict JSON schema."""
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {k: to_json_schema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = to_json_schema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [to_json_schema(v) for v in value]
        elif key.startswith("x-kubernetes-") or key in ("nullable", "default", "description"):
            continue
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if (
        out.get("type") == "object"
        and "properties" in out
        and "additionalProperties" not in out
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def load_crds(directory):
    schemas = {}
    for path in sorted(Path(directory).glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group = crd["spec"]["group"]
            kind = crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schema = to_json_schema(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
                # The API server declares these on every object.
                schema.setdefault("properties", {}).update(
                    {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "metadata": {"type": "object"},
                    }
                )
                schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--kubernetes-version", required=True)
    parser.add_argument("--crds", required=True)
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()

    crds = load_crds(args.crds)
    checked = failed = 0
    for filename in args.files:
        for doc in yaml.safe_load_all(Path(filename).read_text()):
            if not doc:
                continue
            if str(doc.get("apiVersion", "")).startswith("kustomize.config.k8s.io/"):
                # Read by kustomize, never sent to a cluster; charts/test-chart.sh renders
                # and validates what it produces.
                print(f"skip {filename}: {doc.get('kind')} (kustomize input)")
                continue
            checked += 1
            name = f"{filename}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            key = (doc.get("apiVersion"), doc.get("kind"))
            try:
                if key in crds:
                    jsonschema.Draft202012Validator(crds[key]).validate(doc)
                else:
                    utils.validate(doc, args.kubernetes_version, strict=True)
            except jsonschema.ValidationError as e:
                failed += 1
                path = ".".join(str(p) for p in e.absolute_path)
                print(f"FAIL {name}: {path}: {e.message}")
                continue
            except utils.SchemaNotFoundError as e:
                failed += 1
                print(f"FAIL {name}: {e.message}")
                continue
            print(f"ok   {name}")
    print(f"{checked - failed} passed, {failed} failed")
    return 1 if failed or not checked else 0


if __name__ == "__main__":
    sys.exit(main())
