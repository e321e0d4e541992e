#!/usr/bin/env bash
# Small-file uploads and downloads with and without trunk storage: `fdfs bench` (split
# writes, as FastDFS's C and Java clients send) against a two-member group
# (`fdfs-node local --replicas 2`, release build), once with files of their own and once
# with `use_trunk_file = true` (slots of 256 B to 1 MB in 64 MB trunk files, the FastDFS
# sample's settings). After each mode it prints the regular files (inodes) and disk bytes
# both members hold for the uploaded files.
#
#   scripts/bench-trunk.sh [SIZES] [CONNS] [FILES]     (default "4K 32K" "8" 20000)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=lib/local.sh
source scripts/lib/local.sh
read -r -a sizes <<<"${1:-4K 32K}"
read -r -a conns <<<"${2:-8}"
files="${3:-20000}"

cargo build -q --release -p fdfs-node --bins
bin="${CARGO_TARGET_DIR:-target}/release"
local_workdir

for mode in plain trunk; do
    data="$work/$mode"
    mkdir -p "$data"
    conf="$work/$mode.toml"
    if [[ "$mode" == trunk ]]; then
        printf '[tracker.trunk]\nuse_trunk_file = true\n' >"$conf"
    else
        : >"$conf"
    fi
    start_pair "$data" "$conf" 127.0.33.1 127.0.33.2
    for _ in $(seq 1 600); do
        [[ "$mode" == plain ]] && break
        "$bin/fdfs" --tracker "$tracker" monitor | grep -q 'if_trunk_server = 1' && break
        sleep 0.1
    done
    before_files="$(find "$data" -type f | wc -l)"
    before_bytes="$(du -s --block-size=1 "$data" | cut -f1)"
    for size in "${sizes[@]}"; do
        for c in "${conns[@]}"; do
            echo "== $mode, $size, $c connection(s)"
            "$bin/fdfs" --tracker "$tracker" --client-profile split bench --keep \
                --files "$files" --size "$size" -c "$c" --server-pid "$node_pid" |
                grep -v '^bench:'
        done
    done
    # Both members hold every file once replication has caught up: wait until the count
    # of regular files and the bytes on disk stop moving.
    last=-1
    while :; do
        now="$(find "$data" -type f | wc -l):$(du -s --block-size=1 "$data" | cut -f1)"
        [[ "$now" == "$last" ]] && break
        last="$now"
        sleep 1
    done
    sync
    after_files="$(find "$data" -type f | wc -l)"
    after_bytes="$(du -s --block-size=1 "$data" | cut -f1)"
    echo "== $mode: $((after_files - before_files)) regular files," \
        "$(((after_bytes - before_bytes) / 1048576)) MiB on disk for both members"
    kill -TERM "$node_pid"
    wait "$node_pid" || true
    node_pid=""
done
