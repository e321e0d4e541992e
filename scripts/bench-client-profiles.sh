#!/usr/bin/env bash
# `fdfs bench` with both client write profiles against a two-member group
# (`fdfs-node local --replicas 2`, release build): `single` (TCP_NODELAY, one write per
# request, this project's client) and `split` (Nagle on, an upload's header and body in
# separate writes, as FastDFS's C and Java clients do). Each phase prints files/s, MB/s,
# latency, and the node's CPU time per operation and peak RSS.
#
#   scripts/bench-client-profiles.sh [SIZES] [CONNS]     (default "4K 100K 10M" "1 8 32")
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=lib/local.sh
source scripts/lib/local.sh
read -r -a sizes <<<"${1:-4K 100K 10M}"
read -r -a conns <<<"${2:-1 8 32}"

cargo build -q --release -p fdfs-node --bins
bin="${CARGO_TARGET_DIR:-target}/release"
local_workdir

start_pair "$work/data" "" 127.0.32.1 127.0.32.2

# Enough files for a few seconds per phase on two cores.
files_for() {
    case "$1" in
        4K) echo 8000 ;;
        100K) echo 3000 ;;
        10M) echo 64 ;;
        *) echo 1000 ;;
    esac
}
for size in "${sizes[@]}"; do
    for c in "${conns[@]}"; do
        for profile in single split; do
            echo "== $size, $c connection(s), $profile writes"
            "$bin/fdfs" --tracker "$tracker" --client-profile "$profile" bench \
                --files "$(files_for "$size")" --size "$size" -c "$c" --server-pid "$node_pid" |
                grep -v '^bench:'
        done
    done
done
