"""Runs the commands of the user guides, so the guides cannot rot.

Every fenced block of docs/{install,first-cluster,clients,operations,gitops,migration}.md is
one of:

  ```sh                  run, in order, by one bash per guide (set -euo pipefail), in a
                         scratch directory that links examples/, charts/, crds/ and images/
  ```sh cluster          needs a Kubernetes cluster: not run; its first line must say so
                         ("# needs a Kubernetes cluster")
  ```sh ci:SCRIPT        run by CI through SCRIPT, which must contain each command
  ```text expect         each line must appear, in order, in the output of the sh block
                         before it, once digits and file IDs are normalised
  ```text columns        a `kubectl get` table: its header must be the printer columns of
                         the CRDs in crds/ (a block per kind, as kubectl prints them)
  ```python run          run with the e2e venv's python (py3fdfs installed) at that point
  ```yaml crd            validated against the CRDs' schemas (kind fdfs.dev/*)
  anything else          shown only (Java, Go, YAML, output without a check)

The test runs in fresh network, mount and PID namespaces: loopback only, the tracker Service
names of the guides resolve to 127.0.0.1 through a private /etc/hosts, and every process a
guide starts ends with it.
"""

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jsonschema
import yaml

REPO = Path(__file__).resolve().parents[2]
GUIDES = [
    "install.md",
    "first-cluster.md",
    "clients.md",
    "operations.md",
    "gitops.md",
    "migration.md",
]
FENCE = re.compile(r"^```(.*)$")


def blocks(path):
    """(line number, info string, text) of each fenced block."""
    out, info, start, lines = [], None, 0, []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        m = FENCE.match(line)
        if m and info is None:
            info, start, lines = m.group(1).strip(), n, []
        elif line.strip() == "```" and info is not None:
            out.append((start, info, "\n".join(lines) + "\n"))
            info = None
        elif info is not None:
            lines.append(line)
    return out


FILE_ID = re.compile(r"group\d+/M[0-9A-F]{2}/[0-9A-F]{2}/[0-9A-F]{2}/[A-Za-z0-9_-]+(\.[A-Za-z0-9]+)?")


def normalise(line):
    line = FILE_ID.sub("FILEID", line)
    line = re.sub(r"\d+", "N", line)
    return " ".join(line.split())


def expect(output, text):
    """None when every line of text appears in output in order, else the first missing."""
    got = [normalise(l) for l in output.splitlines()]
    i = 0
    for want in (normalise(l) for l in text.splitlines()):
        if not want:
            continue
        while i < len(got) and got[i] != want:
            i += 1
        if i == len(got):
            return want
        i += 1
    return None


def printer_columns():
    """kind -> header line kubectl prints for `kubectl get` (priority-0 columns)."""
    headers = {}
    for path in sorted((REPO / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        version = crd["spec"]["versions"][0]
        cols = ["NAME"] + [
            c["name"].upper() for c in version.get("additionalPrinterColumns", []) if not c.get("priority")
        ]
        headers[crd["spec"]["names"]["plural"] + "." + crd["spec"]["group"]] = cols
    return headers


def crd_schemas():
    sys.path.insert(0, str(REPO / "operator" / "tests"))
    from validate_manifests import load_crds

    return load_crds(REPO / "crds")


class Tally:
    passed = 0
    failed = 0

    def check(self, name, ok, why=""):
        if ok:
            self.passed += 1
            print(f"ok   {name}")
        else:
            self.failed += 1
            print(f"FAIL {name}: {why}")


def run_guide(t, guide, py, scratch):
    path = REPO / "docs" / guide
    items = blocks(path)
    t.check(f"{guide}: has fenced blocks", bool(items))
    # Whatever a guide starts in the background stops when its script ends.
    script = ["set -euo pipefail", "trap 'kill $(jobs -p) 2>/dev/null || true; wait' EXIT"]
    checks = []  # (marker index, kind, line, text)
    runnable = 0
    last_marker = None
    for line, info, text in items:
        words = info.split()
        lang = words[0] if words else ""
        tag = words[1] if len(words) > 1 else ""
        where = f"{guide}:{line}"
        if lang == "sh" and not tag:
            runnable += 1
            last_marker = runnable
            script.append(f"echo '@@block {runnable}'")
            script.append(text)
        elif lang == "sh" and tag == "cluster":
            first = text.splitlines()[0] if text.strip() else ""
            t.check(f"{where}: cluster block says so", first.startswith("# needs a Kubernetes cluster"), first)
        elif lang == "sh" and tag.startswith("ci:"):
            target = REPO / tag[3:]
            body = target.read_text() if target.is_file() else ""
            cmds = [l.split("#")[0].strip() for l in text.splitlines()]
            missing = [c for c in cmds if c and c not in body]
            t.check(f"{where}: commands run by {tag[3:]}", target.is_file() and not missing, f"missing {missing}")
        elif lang == "python" and tag == "run":
            runnable += 1
            last_marker = runnable
            script.append(f"echo '@@block {runnable}'")
            script.append(f"{py} - <<'PYTHON_EOF'\n{text}PYTHON_EOF")
        elif lang == "text" and tag == "expect":
            checks.append((last_marker, "expect", where, text))
        elif lang == "text" and tag == "columns":
            checks.append((None, "columns", where, text))
        elif lang == "yaml" and tag == "crd":
            checks.append((None, "crd", where, text))
        elif lang == "sh":
            t.check(f"{where}: known sh tag", False, f"unknown tag {tag!r}")
    out = ""
    if runnable:
        script_path = scratch / f"{guide}.sh"
        script_path.write_text("\n".join(script) + "\n")
        proc = subprocess.run(["bash", str(script_path)], cwd=scratch, capture_output=True, text=True, timeout=600)
        out = proc.stdout
        t.check(f"{guide}: {runnable} runnable blocks exit 0", proc.returncode == 0,
                f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}")
    outputs = {}
    for chunk in out.split("@@block ")[1:]:
        n, _, rest = chunk.partition("\n")
        outputs[int(n)] = rest
    columns = printer_columns()
    schemas = None
    for marker, kind, where, text in checks:
        if kind == "expect":
            missing = expect(outputs.get(marker, ""), text)
            t.check(f"{where}: output as shown", missing is None,
                    f"no line like {missing!r} in\n{outputs.get(marker, '')}")
        elif kind == "columns":
            heads = [l.split() for l in text.splitlines() if l.startswith("NAME")]
            known = [cols for cols in columns.values()]
            t.check(f"{where}: table headers are the CRDs' printer columns",
                    heads and all(h in known for h in heads), f"{heads} vs {known}")
        elif kind == "crd":
            schemas = schemas or crd_schemas()
            docs = [d for d in yaml.safe_load_all(text) if d]
            for doc in docs:
                schema = schemas.get((doc.get("apiVersion"), doc.get("kind")))
                try:
                    jsonschema.Draft202012Validator(schema).validate(doc)
                    ok, why = schema is not None, "no CRD for this kind"
                except jsonschema.ValidationError as e:
                    ok, why = False, e.message
                t.check(f"{where}: {doc.get('kind')}/{doc['metadata']['name']} matches its CRD", ok, why)


def main():
    py = sys.argv[1]
    # A scratch directory given by the caller (a tmpfs that goes away with the namespace:
    # the local clusters create hundreds of thousands of directories), or a temporary one.
    given = sys.argv[2] if len(sys.argv) > 2 else None
    t = Tally()
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(given or tmp)
        for guide in GUIDES:
            sub = scratch / guide.removesuffix(".md")
            sub.mkdir()
            for name in ["examples", "charts", "crds", "images"]:
                (sub / name).symlink_to(REPO / name)
            started = time.monotonic()
            run_guide(t, guide, py, sub)
            print(f"     {guide}: {time.monotonic() - started:.1f} s")
    print(f"{t.passed} passed, {t.failed} failed")
    return 1 if t.failed or not t.passed else 0


if __name__ == "__main__":
    sys.exit(main())
