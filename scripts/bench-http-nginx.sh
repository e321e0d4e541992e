#!/usr/bin/env bash
# HTTP side by side: nginx 1.22 (Debian) + fastdfs-nginx-module V1.26 in front of the C storage1
# (FastDFS V6.16.1) versus the project's fdfs-node storage HTTP port, driven by the same wrk.
#
#   C    : cluster.sh via side_by_side.py (NO_GROUP2=1): tracker 127.0.0.10:22122,
#          storage1 127.0.0.11:23000; nginx on http://127.0.0.11:18888 (2 workers, sendfile)
#   ours : $FDFS_NODE_BIN local --groups 1 --replicas 2 ... (started by side_by_side.py up rust):
#          tracker 127.0.0.50:32122, storages 127.0.0.51/52:33000, HTTP :19888 on the member holding the file
#
# The nginx set-up is the one ../shared/bench/README.md describes, in $FDFS_REF_DIR/nginx.
#
# usage: scripts/bench-http-nginx.sh [--keep]
#   --keep   leave nginx, the clusters and the uploaded files in place at the end
#            (default: stop nginx, stop only the clusters this script started, delete the test files)
# environment:
#   RUNS (3)  DURATION (10s)  THREADS (2)  CONNS (32)   wrk -t$THREADS -c$CONNS -d$DURATION --latency
#   FDFS_REF_DIR ($HOME/fdfs-ref)   FDFS_NODE_BIN (target/release/fdfs-node of this checkout)
#   BENCH_DIR (../shared/bench beside this checkout: side_by_side.py, cluster.sh)
#   WRK2 (unset)  RATES ("10000 20000 30000")  RATE_DURATION (20s)
#            with WRK2 set to a wrk2 binary (built from github.com/giltene/wrk2, never
#            committed), the 4 KiB and range cells are also driven at each fixed rate, open
#            loop, for latency at equal load (closed-loop wrk's percentiles include the
#            client's own queueing once it saturates the CPU it shares with the server)
# output: a markdown table on stdout; raw data in $FDFS_REF_DIR/results/http-<timestamp>/
set -u

KEEP=0
for a in "$@"; do
  case $a in
    --keep) KEEP=1 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "unknown argument $a (usage: $0 [--keep])" >&2; exit 2 ;;
  esac
done

REF=${FDFS_REF_DIR:-$HOME/fdfs-ref}
export FDFS_REF_DIR=$REF
export FDFS_NODE_BIN=${FDFS_NODE_BIN:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/release/fdfs-node}
B=${BENCH_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/shared/bench}
SBS=$B/side_by_side.py
RUNS=${RUNS:-3}
DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-32}
NGX=$REF/nginx
NGX_PIDFILE=$NGX/logs/nginx.pid
NGINX_URL=http://127.0.0.11:18888
C_CONF=$REF/conf/client.conf
R_CONF=$REF/conf/rust_client.conf
RUST_PIDFILE=$REF/rust-run/fdfs-node.pid
OUT=$REF/results/http-$(date +%Y%m%d-%H%M%S)
TCK=$(getconf CLK_TCK)

log() { echo "$(date +%H:%M:%S) $*" >&2; }
die() { log "bench-http-nginx.sh: $*"; exit 1; }

for t in nginx wrk curl fdfs_upload_file fdfs_file_info fdfs_delete_file python3; do
  command -v $t >/dev/null 2>&1 || die "$t not found"
done
[ -x "$SBS" ] || die "$SBS not found"
[ -f "$NGX/conf/nginx.conf" ] || die "$NGX/conf/nginx.conf missing"
mkdir -p "$OUT" || die "cannot create $OUT"
cd "$OUT" || exit 1

# ---------- start what is not running ----------
STARTED_C=0 STARTED_RUST=0 STARTED_NGINX=0
UPLOADED_C=() UPLOADED_R=()

nginx_master() {   # pid of our nginx master (the one run with -p $NGX), or fail
  local p
  p=$(tr -dc '0-9' 2>/dev/null <"$NGX_PIDFILE")
  [ -n "$p" ] && kill -0 "$p" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF "nginx: master process nginx -p $NGX " || return 1
  echo "$p"
}

cleanup() {
  local rc=$? p i
  trap - EXIT INT TERM
  if [ $KEEP = 1 ]; then
    log "--keep: leaving nginx (pid $(nginx_master)), the clusters and the test files in place"
    exit $rc
  fi
  for f in "${UPLOADED_C[@]}"; do fdfs_delete_file "$C_CONF" "$f" >/dev/null 2>&1; done
  for f in "${UPLOADED_R[@]}"; do fdfs_delete_file "$R_CONF" "$f" >/dev/null 2>&1; done
  if p=$(nginx_master); then
    nginx -p "$NGX" -c conf/nginx.conf -s quit 2>>"$NGX/logs/error.log"
    for i in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$p" 2>/dev/null && kill "$p"
    log "nginx stopped"
  fi
  [ $STARTED_RUST = 1 ] && "$SBS" down rust >&2
  [ $STARTED_C = 1 ] && "$SBS" down c >&2
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

status=$("$SBS" status)
if ! grep -q '^c running' <<<"$status"; then
  log "starting the C cluster (group1 only)"
  STARTED_C=1
  "$SBS" up c >&2 || die "C cluster failed to start"
fi
if ! grep -q '^rust running' <<<"$status"; then
  log "starting ours: $FDFS_NODE_BIN local --groups 1 --replicas 2"
  STARTED_RUST=1
  "$SBS" up rust >&2 || die "fdfs-node failed to start"
fi
if ! NGX_PID=$(nginx_master); then
  ss -ltnH | awk '{print $4}' | grep -qxF 127.0.0.11:18888 && die "127.0.0.11:18888 is taken by another process"
  log "starting nginx -p $NGX -c conf/nginx.conf"
  nginx -p "$NGX" -c conf/nginx.conf 2>>"$NGX/logs/error.log" || die "nginx failed to start (see $NGX/logs/error.log)"
  STARTED_NGINX=1
  for i in $(seq 1 25); do NGX_PID=$(nginx_master) && break; sleep 0.2; done
  [ -n "${NGX_PID:-}" ] || die "nginx master not found"
fi
RUST_PID=$(awk '{print $1}' "$RUST_PIDFILE")
kill -0 "$RUST_PID" 2>/dev/null || die "fdfs-node pid $RUST_PID not alive"
log "nginx master $NGX_PID (workers $(pgrep -P "$NGX_PID" | tr '\n' ' ')), fdfs-node $RUST_PID"

# ---------- test files ----------
head -c 4096 /dev/urandom >"$OUT/file-4k" && head -c 1048576 /dev/urandom >"$OUT/file-1m" || die "cannot create test files"

upload() {   # upload CONF FILE PREFERRED_STORAGE -> file id on stdout
  local id
  id=$(fdfs_upload_file "$1" "$2" "$3" 2>>"$OUT/upload.err") && [ -n "$id" ] && { echo "$id"; return 0; }
  log "direct upload to $3 failed, letting the tracker choose"
  id=$(fdfs_upload_file "$1" "$2" 2>>"$OUT/upload.err") && [ -n "$id" ] && { echo "$id"; return 0; }
  return 1
}

source_ip() { fdfs_file_info "$1" "$2" 2>/dev/null | awk -F': ' '/source ip address/ {print $2}'; }

wait_http() {   # wait_http URL FILE [RANGE]: URL answers 200 (206 with RANGE), no redirect, body == FILE (or its first 64 KiB)
  local url=$1 f=$2 range=${3:-} i code want=200 hdr=()
  [ -n "$range" ] && { want=206; hdr=(-H "Range: $range"); }
  for i in $(seq 1 120); do
    code=$(curl -s "${hdr[@]}" -o "$OUT/body.tmp" -w '%{http_code}' "$url")
    if [ "$code" = "$want" ]; then
      if [ -n "$range" ]; then head -c 65536 "$f" >"$OUT/expect.tmp"; else cp "$f" "$OUT/expect.tmp"; fi
      cmp -s "$OUT/body.tmp" "$OUT/expect.tmp" || die "$url: body differs from the uploaded file"
      rm -f "$OUT/body.tmp" "$OUT/expect.tmp"
      return 0
    fi
    sleep 0.5
  done
  die "$url: no $want after 60 s (last code $code)"
}

declare -A URL
for sz in 4k 1m; do
  id=$(upload "$C_CONF" "$OUT/file-$sz" 127.0.0.11:23000) || die "C upload of $sz failed (see $OUT/upload.err)"
  UPLOADED_C+=("$id")
  log "C    $sz: $id (source $(source_ip "$C_CONF" "$id"))"
  URL[nginx,$sz]=$NGINX_URL/$id
  id=$(upload "$R_CONF" "$OUT/file-$sz" 127.0.0.51:33000) || die "upload of $sz to ours failed (see $OUT/upload.err)"
  UPLOADED_R+=("$id")
  ip=$(source_ip "$R_CONF" "$id")
  case $ip in 127.0.0.51|127.0.0.52) ;; *) die "ours: unexpected source ip '$ip' for $id" ;; esac
  log "ours $sz: $id (source $ip)"
  URL[ours,$sz]=http://$ip:19888/$id
done
for t in nginx ours; do
  for sz in 4k 1m; do wait_http "${URL[$t,$sz]}" "$OUT/file-$sz"; done
  wait_http "${URL[$t,1m]}" "$OUT/file-1m" "bytes=0-65535"
  log "$t: bodies match (4 KiB, 1 MiB, 1 MiB range 0-65535): ${URL[$t,4k]} ${URL[$t,1m]}"
done
printf '%s\n' "nginx 4k ${URL[nginx,4k]}" "nginx 1m ${URL[nginx,1m]}" "ours 4k ${URL[ours,4k]}" "ours 1m ${URL[ours,1m]}" >"$OUT/urls"

# ---------- measure ----------
ticks() {   # sum of utime+stime (all threads) of the given pids
  local p s=0 v
  for p in "$@"; do
    v=$(awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$p/stat" 2>/dev/null) || v=0
    s=$((s + ${v:-0}))
  done
  echo $s
}

to_ms() {   # wrk latency "812.00us" / "1.23ms" / "1.05s" -> ms
  awk -v x="$1" 'BEGIN { v = x + 0; if (x ~ /us$/) v /= 1000; else if (x ~ /ms$/) ; else if (x ~ /m$/) v *= 60000; else if (x ~ /s$/) v *= 1000; printf "%.3f", v }'
}

RAW=$OUT/raw.tsv
printf 'cell\ttarget\trun\treq_s\tp50_ms\tp99_ms\tcpu_pct\tnon2xx\tsock_err\tMB_s\n' >"$RAW"
one() {   # one CELL TARGET RUN
  local cell=$1 t=$2 run=$3 url pids hdr=() t0 t1 c0 c1 w rps p50 p99 cpu non2xx serr mbs wall
  case $cell in 4KiB) url=${URL[$t,4k]} ;; 1MiB) url=${URL[$t,1m]} ;; 1MiB-range64K) url=${URL[$t,1m]}; hdr=(-H 'Range: bytes=0-65535') ;; esac
  if [ $t = nginx ]; then pids=$(pgrep -P "$NGX_PID" | tr '\n' ' '); else pids=$RUST_PID; fi
  w=$OUT/wrk-$cell-$t-$run.txt
  c0=$(ticks $pids); t0=$(date +%s.%N)
  wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "${hdr[@]}" "$url" >"$w" 2>&1
  t1=$(date +%s.%N); c1=$(ticks $pids)
  wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
  cpu=$(awk -v d=$((c1 - c0)) -v tck="$TCK" -v w="$wall" 'BEGIN { printf "%.0f", 100 * d / tck / w }')
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$w")
  p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$w")")
  p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$w")")
  non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$w"); non2xx=${non2xx:-0}
  serr=$(awk '/Socket errors:/ {gsub(/,/, ""); print $4 + $6 + $8 + $10}' "$w"); serr=${serr:-0}
  mbs=$(awk '/^Transfer\/sec:/ { v = $2 + 0; if ($2 ~ /GB$/) v *= 1024; else if ($2 ~ /KB$/) v /= 1024; else if ($2 ~ /[0-9]B$/) v /= 1048576; printf "%.1f", v }' "$w")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$cell" "$t" "$run" "${rps:-0}" "$p50" "$p99" "$cpu" "$non2xx" "$serr" "${mbs:-0}" >>"$RAW"
  log "$(printf '%-14s %-5s run%s: %10s req/s  p50 %8s ms  p99 %8s ms  cpu %4s%%  %7s MB/s  non2xx %s  sockerr %s' \
    "$cell" "$t" "$run" "${rps:-?}" "$p50" "$p99" "$cpu" "${mbs:-?}" "$non2xx" "$serr")"
}

log "wrk -t$THREADS -c$CONNS -d$DURATION --latency, $RUNS run(s) per cell and target; results in $OUT"
for cell in 4KiB 1MiB 1MiB-range64K; do
  for run in $(seq 1 "$RUNS"); do
    one "$cell" nginx "$run"
    one "$cell" ours "$run"
  done
done

# ---------- latency at fixed rates (optional) ----------
RATED=$OUT/rated.tsv
if [ -n "${WRK2:-}" ]; then
  [ -x "$WRK2" ] || die "WRK2=$WRK2 is not executable"
  printf 'cell\trate\ttarget\trun\treq_s\tp50_ms\tp90_ms\tp99_ms\tp999_ms\n' >"$RATED"
  for run in $(seq 1 "$RUNS"); do
    for cell in 4KiB 1MiB-range64K; do
      for rate in ${RATES:-10000 20000 30000}; do
        for t in nginx ours; do
          hdr=()
          case $cell in 4KiB) url=${URL[$t,4k]} ;; *) url=${URL[$t,1m]}; hdr=(-H 'Range: bytes=0-65535') ;; esac
          w=$OUT/wrk2-$cell-$rate-$t-$run.txt
          "$WRK2" -t"$THREADS" -c"$CONNS" -d"${RATE_DURATION:-20s}" -R"$rate" --latency "${hdr[@]}" "$url" >"$w" 2>&1
          pct() { to_ms "$(awk -v p="$1" '$1 == p {print $2; exit}' "$w")"; }
          rps=$(awk '/^Requests\/sec:/ {print $2}' "$w")
          printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$cell" "$rate" "$t" "$run" "${rps:-0}" \
            "$(pct 50.000%)" "$(pct 90.000%)" "$(pct 99.000%)" "$(pct 99.900%)" >>"$RATED"
          log "$(printf '%-14s %6s/s %-5s run%s: p50 %s  p99 %s ms' "$cell" "$rate" "$t" "$run" "$(pct 50.000%)" "$(pct 99.000%)")"
        done
      done
    done
  done
fi

python3 - "$RAW" "$OUT/summary.md" "$THREADS" "$CONNS" "$DURATION" "$RUNS" "$RATED" <<'EOF'
import csv, statistics, sys
raw, out, thr, conns, dur, runs = sys.argv[1:7]
rows = list(csv.DictReader(open(raw), delimiter="\t"))
def med(cell, t, k):
    xs = [float(r[k]) for r in rows if r["cell"] == cell and r["target"] == t]
    return statistics.median(xs) if xs else float("nan"), (min(xs) if xs else 0), (max(xs) if xs else 0)
def errs(cell, t):
    return sum(int(r["non2xx"]) + int(r["sock_err"]) for r in rows if r["cell"] == cell and r["target"] == t)
lines = ["| cell | nginx req/s med [min-max] | ours req/s med [min-max] | ours/nginx | nginx p50 / p99 ms | ours p50 / p99 ms "
         "| nginx CPU% | ours CPU% | nginx MB/s | ours MB/s | errors nginx/ours |", "|" + "---|" * 11]
for cell in ("4KiB", "1MiB", "1MiB-range64K"):
    n, o = med(cell, "nginx", "req_s"), med(cell, "ours", "req_s")
    ratio = f"{o[0] / n[0]:.2f}" if n[0] else "-"
    lines.append(f"| {cell} | {n[0]:.0f} [{n[1]:.0f}-{n[2]:.0f}] | {o[0]:.0f} [{o[1]:.0f}-{o[2]:.0f}] | {ratio} | "
                 f"{med(cell, 'nginx', 'p50_ms')[0]:.2f} / {med(cell, 'nginx', 'p99_ms')[0]:.2f} | "
                 f"{med(cell, 'ours', 'p50_ms')[0]:.2f} / {med(cell, 'ours', 'p99_ms')[0]:.2f} | "
                 f"{med(cell, 'nginx', 'cpu_pct')[0]:.0f} | {med(cell, 'ours', 'cpu_pct')[0]:.0f} | "
                 f"{med(cell, 'nginx', 'MB_s')[0]:.0f} | {med(cell, 'ours', 'MB_s')[0]:.0f} | "
                 f"{errs(cell, 'nginx')}/{errs(cell, 'ours')} |")
note = (f"\nwrk -t{thr} -c{conns} -d{dur} --latency, {runs} run(s) per cell, alternating nginx then ours. "
        "Medians over runs. CPU% = % of one core (utime+stime over wall time): nginx = its 2 workers summed; "
        "ours = the whole fdfs-node `local` process (tracker + both storages). "
        "errors = wrk non-2xx/3xx responses + socket errors.\n")
import os
rated = sys.argv[7]
if os.path.exists(rated):
    rr = list(csv.DictReader(open(rated), delimiter="\t"))
    def rmed(cell, rate, t, k):
        xs = [float(r[k]) for r in rr if r["cell"] == cell and r["rate"] == rate and r["target"] == t]
        return statistics.median(xs) if xs else float("nan")
    note += ("\nFixed rate (wrk2 -R, open loop, same threads and connections), medians over runs, ms:\n\n"
             "| cell | req/s | nginx p50 / p90 / p99 / p99.9 | ours p50 / p90 / p99 / p99.9 |\n|---|---|---|---|\n")
    for cell, rate in dict.fromkeys((r["cell"], r["rate"]) for r in rr):
        f = lambda t: " / ".join(f"{rmed(cell, rate, t, k):.2f}" for k in ("p50_ms", "p90_ms", "p99_ms", "p999_ms"))
        note += f"| {cell} | {rate} | {f('nginx')} | {f('ours')} |\n"
txt = "\n".join(lines)
open(out, "w").write(txt + "\n" + note)
print(txt + "\n" + note)
EOF
log "summary: $OUT/summary.md"
