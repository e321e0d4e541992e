#!/usr/bin/env bash
# Thumbnail serving: one storage (`fdfs-node local`, release build) with two presets,
# COUNT distinct 1200×900 JPEG photos uploaded, then
#   1. first requests: every photo's `?w=300&h=300&fit=cover` asked once by THREADS client
#      threads (each request decodes, resizes, encodes and stores a thumbnail);
#   2. stored thumbnails: `wrk -t2 -c32` on one thumbnail, by size (the query form) and by
#      its slave name.
# Prints thumbnails/s, the node's CPU per thumbnail, the make time from /metrics and the
# wrk figures.
#
#   scripts/bench-thumbnails.sh [COUNT] [THREADS]      (default 200 4)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=lib/local.sh
source scripts/lib/local.sh
count="${1:-200}"
threads="${2:-4}"
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 1; }

cargo build -q --release -p fdfs-node --bins
bin="${CARGO_TARGET_DIR:-target}/release"
venv="${FDFS_BENCH_VENV:-$HOME/.cache/fdfs-bench-venv}"
[[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
"$venv/bin/python" -c 'import PIL' 2>/dev/null || "$venv/bin/pip" -q install 'Pillow>=10,<12'
local_workdir

cat >"$work/node.toml" <<'TOML'
[storage]
heart_beat_interval = 1
[[storage.http.thumbnails.presets]]
name = "_300x300"
width = 300
height = 300
fit = "cover"
[[storage.http.thumbnails.presets]]
name = "_150"
width = 150
height = 150
TOML
"$bin/fdfs-node" local --data-dir "$work/data" --config "$work/node.toml" \
    --tracker-addr 127.0.31.1:22122 --storage-ip 127.0.31.2 --ip45-port 0 \
    >"$work/nodes.txt" 2>"$work/nodes.log" &
node_pid=$!
wait_until_ready "$node_pid" "$work/nodes.txt" "$work/nodes.log"
tracker="$(awk '$1 == "tracker" && !/profile=/ { print $2; exit }' "$work/nodes.txt")"
http="$(awk '$1 == "storage" { sub("http=", "", $4); print $4; exit }' "$work/nodes.txt")"

"$venv/bin/python" - "$work/photos" "$count" <<'PY'
import os, random, sys
from PIL import Image, ImageFilter
out, count = sys.argv[1], int(sys.argv[2])
os.makedirs(out, exist_ok=True)
random.seed(7)
for i in range(count):
    # A smooth background with detail on it: JPEG sizes like a product photo's.
    img = Image.merge("RGB", [Image.linear_gradient("L").resize((1200, 900)).rotate(random.randint(0, 359)),
                              Image.effect_noise((1200, 900), 40 + i % 30).filter(ImageFilter.GaussianBlur(1)),
                              Image.radial_gradient("L").resize((1200, 900))])
    img.save(f"{out}/{i:04}.jpg", quality=85)
PY
: >"$work/ids"
for f in "$work"/photos/*.jpg; do
    "$bin/fdfs" --tracker "$tracker" upload "$f" >>"$work/ids"
done
bytes="$(du -cb "$work"/photos/*.jpg | tail -1 | cut -f1)"
echo "photos: $count × 1200×900 JPEG, $((bytes / count / 1024)) KiB on average"

cpu() { awk '{ print $14 + $15 }' "/proc/$node_pid/stat"; }
tck="$(getconf CLK_TCK)"
before="$(cpu)"
"$venv/bin/python" - "$http" "$work/ids" "$threads" <<'PY'
import io, sys, time, urllib.request
from concurrent.futures import ThreadPoolExecutor
from PIL import Image
http, ids, threads = sys.argv[1], open(sys.argv[2]).read().split(), int(sys.argv[3])
def make(file_id):
    with urllib.request.urlopen(f"http://{http}/{file_id}?w=300&h=300&fit=cover") as r:
        body = r.read()
    assert Image.open(io.BytesIO(body)).size == (300, 300)
    return len(body)
start = time.monotonic()
with ThreadPoolExecutor(threads) as pool:
    sizes = list(pool.map(make, ids))
took = time.monotonic() - start
print(f"first requests: {len(ids)} thumbnails in {took:.2f} s = {len(ids) / took:.1f}/s "
      f"({threads} client threads), {sum(sizes) // len(sizes) // 1024} KiB each")
PY
after="$(cpu)"
made="$(curl -s "http://$http/metrics" | awk '/^fdfs_storage_thumbnail_make_seconds_(sum|count) / { v[$1] = $2 } END { printf "%.1f ms", 1000 * v["fdfs_storage_thumbnail_make_seconds_sum"] / v["fdfs_storage_thumbnail_make_seconds_count"] }')"
echo "node CPU per thumbnail: $(awk -v d=$((after - before)) -v t="$tck" -v n="$count" 'BEGIN { printf "%.1f ms", 1000 * d / t / n }'); make time (read, decode, resize, encode, store): $made on average"

id="$(head -1 "$work/ids")"
slave="${id%.jpg}_300x300.jpg"
for url in "http://$http/$id?w=300&h=300&fit=cover" "http://$http/$slave"; do
    echo "stored thumbnail, $url:"
    wrk -t2 -c32 -d10s --latency "$url" | grep -E "Requests/sec| 50%| 99%"
done
