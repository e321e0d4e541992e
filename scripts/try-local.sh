#!/usr/bin/env bash
# Main job: build, start a local cluster (`fdfs-node local`), upload a file with
# the `fdfs` CLI, download it back, compare, delete, and stop the cluster.
#
# Usage: scripts/try-local.sh [FILE]     (default: a generated 1 MiB file)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=lib/local.sh
source scripts/lib/local.sh

command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)" >&2; exit 1; }
cargo build --release -p fdfs-node --bins

local_workdir

bin=target/release
"$bin/fdfs-node" local --data-dir "$work/data" >"$work/nodes.txt" 2>"$work/nodes.log" &
node_pid=$!
wait_until_ready "$node_pid" "$work/nodes.txt" "$work/nodes.log"
cat "$work/nodes.txt"
tracker="$(awk '$1 == "tracker" && !/profile=/ { print $2; exit }' "$work/nodes.txt")"

src="${1:-}"
if [[ -z "$src" ]]; then
    src="$work/sample.bin"
    head -c 1048576 /dev/urandom >"$src"
fi
file_id="$("$bin/fdfs" --tracker "$tracker" upload "$src")"
echo "uploaded $src as $file_id"
"$bin/fdfs" --tracker "$tracker" download "$file_id" "$work/downloaded"
cmp "$src" "$work/downloaded"
echo "downloaded $file_id: identical to $src"
"$bin/fdfs" --tracker "$tracker" monitor
"$bin/fdfs" --tracker "$tracker" delete "$file_id"
echo "main job OK"
