#!/usr/bin/env bash
# Validates Kubernetes manifests (YAML files, or directories of them) against the official
# Kubernetes schemas with kubernetes-validate in strict mode, and fdfs.dev custom resources
# against the CRDs in crds/. Exits non-zero if any document fails or has no schema.
#
#   operator/tests/validate-manifests.sh crds examples /tmp/built
#
# The Python tools live in a venv under the cargo target directory ($CARGO_TARGET_DIR, or
# target/), created on first use and reused afterwards.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

K8S_VERSION="${K8S_VERSION:-1.35.0}"
KV_VERSION="1.37.0"
target="${CARGO_TARGET_DIR:-$repo/target}"
venv="$target/k8s-venv"
stamp="$venv/.kubernetes-validate-$KV_VERSION"

# Tests run side by side: one of them creates the venv, the others wait for it.
mkdir -p "$target"
exec 9>"$target/k8s-venv.lock"
flock 9
if [ ! -f "$stamp" ]; then
    command -v python3 >/dev/null || { apt-get update && apt-get install -y --no-install-recommends python3; }
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
        apt-get update && apt-get install -y --no-install-recommends python3-venv
        python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$KV_VERSION"
    touch "$stamp"
fi
flock -u 9

files=()
for arg in "$@"; do
    if [ -d "$arg" ]; then
        while IFS= read -r f; do files+=("$f"); done < <(find "$arg" -maxdepth 1 -name '*.yaml' | sort)
    else
        files+=("$arg")
    fi
done
[ "${#files[@]}" -gt 0 ] || { echo "no manifests given" >&2; exit 2; }

exec "$venv/bin/python" "$here/validate_manifests.py" \
    --kubernetes-version "$K8S_VERSION" --crds "$repo/crds" "${files[@]}"
