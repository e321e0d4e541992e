#!/usr/bin/env bash
# Checks the fdfs-operator chart with the real Helm (helm-sdkpy) and kubernetes-validate:
# lint, a rendering for each values combination in charts/fdfs-operator/ci/, strict schema
# validation of every manifest, refusal of bad values, CRDs identical to crds/, and the
# examples (kubectl kustomize, validated against the Kubernetes schemas and the CRDs).
#
#   charts/test-chart.sh [--out DIR]     # DIR receives each case's rendered manifest
#
# The tools come from the venv of charts/chart-venv.sh (created on first use).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$("$repo/charts/chart-venv.sh")"
export PATH="$venv/bin:$PATH"
exec "$venv/bin/python" "$repo/charts/tests/check_chart.py" "$@"
