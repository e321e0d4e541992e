#!/usr/bin/env bash
# Replication under the upload benchmark: a two-member group (`fdfs-node local --replicas 2`,
# release build), `fdfs bench` uploading FILES files of SIZE over CONNS connections, while
# both storages' /metrics are sampled every 0.2 s for the push lag to their peer (seconds
# and binlog bytes). Prints the largest lag seen during the load, how long after the load
# both lags reached zero, and the replication rate.
#
#   scripts/bench-replication.sh [FILES] [SIZE] [CONNS]     (default 30000 4K 32)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=lib/local.sh
source scripts/lib/local.sh
files="${1:-30000}"
size="${2:-4K}"
conns="${3:-32}"

cargo build -q --release -p fdfs-node --bins
bin="${CARGO_TARGET_DIR:-target}/release"
work="$(mktemp -d)"
node_pid=""
sampler_pid=""
cleanup() {
    [[ -n "$sampler_pid" ]] && kill "$sampler_pid" 2>/dev/null || true
    if [[ -n "$node_pid" ]] && kill -0 "$node_pid" 2>/dev/null; then
        kill -TERM "$node_pid"
        wait "$node_pid" || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

printf '[storage]\nheart_beat_interval = 1\n' >"$work/node.toml"
# Both members ACTIVE before the load starts.
start_pair "$work/data" "$work/node.toml" 127.0.30.1 127.0.30.2
mapfile -t https < <(awk '$1 == "storage" { sub("http=", "", $4); print $4 }' "$work/nodes.txt")

# One line per sample: unix time (ms), then lag seconds and bytes of each storage.
sample() {
    while true; do
        line="$(date +%s%3N)"
        for h in "${https[@]}"; do
            m="$(curl -s "http://$h/metrics" || true)"
            s="$(awk '/^fdfs_storage_sync_lag_seconds\{/ { print $2 }' <<<"$m" | sort -n | tail -1)"
            b="$(awk '/^fdfs_storage_sync_lag_bytes\{/ { print $2 }' <<<"$m" | sort -n | tail -1)"
            line="$line ${s:-0} ${b:-0}"
        done
        echo "$line"
        sleep 0.2
    done
}
sample >"$work/lag.txt" &
sampler_pid=$!

start_ms="$(date +%s%3N)"
"$bin/fdfs" --tracker "$tracker" bench --files "$files" --size "$size" -c "$conns" \
    --download-rounds 0 --keep | tee "$work/bench.txt"
end_ms="$(date +%s%3N)"
# Settled: both lags zero for two samples in a row after the load.
for _ in $(seq 1 600); do
    tail -2 "$work/lag.txt" | awk '{ for (i = 2; i <= NF; i++) if ($i != 0) bad = 1 } END { exit bad }' && break
    sleep 0.2
done
kill "$sampler_pid"
sampler_pid=""

# Records both members pushed to their peer.
pushed=0
for h in "${https[@]}"; do
    n="$(curl -s "http://$h/metrics" | awk '/^fdfs_storage_synced_records_total\{/ { s += $2 } END { print s + 0 }')"
    pushed=$((pushed + n))
done
awk -v start="$start_ms" -v end="$end_ms" -v pushed="$pushed" '
    $1 >= start && $1 <= end {
        for (i = 2; i <= NF; i += 2) { if ($i > maxs) maxs = $i; if ($(i + 1) > maxb) maxb = $(i + 1) }
    }
    $1 > end && !settled { z = 1; for (i = 2; i <= NF; i++) if ($i != 0) z = 0; if (z) settled = $1 }
    END {
        printf "lag during load: max %d s, max %d binlog bytes\n", maxs, maxb
        if (!settled) { print "the lag never settled to zero" > "/dev/stderr"; exit 1 }
        printf "settled to zero %.1f s after the load\n", (settled - end) / 1000
        printf "replicated %d files in %.1f s (load and settling): %.0f files/s\n",
            pushed, (settled - start) / 1000, pushed / ((settled - start) / 1000)
    }' "$work/lag.txt"
