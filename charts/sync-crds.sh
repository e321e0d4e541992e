#!/usr/bin/env bash
# Copies the generated CRDs (crds/*.yaml) into the chart, byte for byte. Run it after
# `cargo run -p fdfs-operator --bin crdgen`; charts/test-chart.sh fails while they differ.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$repo/charts/fdfs-operator/files/crds"
rm -f "$dest"/*.yaml
cp "$repo"/crds/*.yaml "$dest"/
