# Shared by the scripts that start `fdfs-node local` in the background.

# wait_until_ready PID OUT LOG: waits (up to 60 s) for the `ready` line the cluster prints
# on OUT; fails with the cluster's log LOG when it exits first or never gets there.
wait_until_ready() {
    local pid="$1" out="$2" log="$3"
    for _ in $(seq 1 600); do
        grep -qx ready "$out" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; return 1; }
        sleep 0.1
    done
    echo "cluster did not become ready" >&2
    return 1
}

# local_workdir: makes a scratch directory in $work; on exit, the cluster in $node_pid (once
# set) gets SIGTERM and is waited for, and $work is removed.
local_workdir() {
    work="$(mktemp -d)"
    node_pid=""
    trap stop_local_and_clean EXIT
}

stop_local_and_clean() {
    if [[ -n "${node_pid:-}" ]] && kill -0 "$node_pid" 2>/dev/null; then
        kill -TERM "$node_pid"
        wait "$node_pid" || true
    fi
    rm -rf "$work"
}

# start_pair DATA_DIR CONFIG TRACKER_IP STORAGE_IP: a two-member group (`"$bin/fdfs-node"
# local --replicas 2`) in the background as $node_pid, its lines in $work/nodes.txt and its
# log in $work/nodes.log; returns once both members are ACTIVE, with $tracker set. CONFIG
# may be empty (no config file).
start_pair() {
    local data="$1" conf="$2" tracker_ip="$3" storage_ip="$4"
    local args=(local --replicas 2 --data-dir "$data" --tracker-addr "$tracker_ip:22122"
        --storage-ip "$storage_ip" --ip45-port 0)
    if [[ -n "$conf" ]]; then
        args+=(--config "$conf")
    fi
    "$bin/fdfs-node" "${args[@]}" >"$work/nodes.txt" 2>"$work/nodes.log" &
    node_pid=$!
    wait_until_ready "$node_pid" "$work/nodes.txt" "$work/nodes.log"
    tracker="$(awk '$1 == "tracker" && !/profile=/ { print $2; exit }' "$work/nodes.txt")"
    for _ in $(seq 1 600); do
        [[ "$("$bin/fdfs" --tracker "$tracker" monitor | grep -c '  ACTIVE$')" == 2 ]] && return 0
        sleep 0.1
    done
    echo "the two members did not become ACTIVE" >&2
    return 1
}
