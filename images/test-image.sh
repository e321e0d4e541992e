#!/usr/bin/env bash
# Builds the fdfs-node image with images/build.sh, runs it with podman in `local` mode and
# uploads and downloads a file from the host through published loopback ports with the
# fdfs CLI. Skips (and says why) when podman is not installed. Removes its container.
#
#   images/test-image.sh                       # both images
#   IMAGE_TEST_OPERATOR=0 images/test-image.sh # the fdfs-node image only (CI: saves a
#                                              # release build of the operator)
#   IMAGE_BINARIES_DIR=DIR images/test-image.sh  # pack static binaries built before (CI: the
#                                              # ones its tests ran against)
#
# How the ports line up: inside the container the tracker listens on 0.0.0.0:T and the
# storage on 0.0.0.0:S. The storage reports to the tracker over the container's loopback,
# so the tracker lists it as 127.0.0.1:S, which is exactly where the host reaches it:
# `-p 127.0.0.1:T:T -p 127.0.0.1:S:S`, with T and S free ports of the host. No host
# network is needed.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

if ! command -v podman >/dev/null; then
    echo "image test skipped: podman is not installed (Debian: apt-get install podman runc)"
    echo "0 passed, 0 failed, 1 skipped"
    exit 0
fi
runtime=()
if command -v runc >/dev/null; then runtime=(--runtime runc); fi

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; }

tag="test-$$"
# The builds leave untagged stage images (podman's layer cache); the ones that appear during
# this test are removed with it.
dangling_before="$(podman images -q --filter dangling=true | sort)"
image="$(IMAGE_PREFIX=localhost IMAGE_TAG="$tag" images/build.sh fdfs-node | sed -n 's/^image //p')"
[ -n "$image" ] && pass "images/build.sh built $image" || { fail "images/build.sh"; exit 1; }
cli="${IMAGE_BINARIES_DIR:-${CARGO_TARGET_DIR:-$repo/target}/x86_64-unknown-linux-gnu/release}/fdfs"

work="$(mktemp -d)"
name="fdfs-image-test-$$"
cleanup() {
    for c in "$name" "$name-files" "$name-operator"; do podman rm -f -t 2 "$c" >/dev/null 2>&1 || true; done
    for i in "$image" "${op_image:-}"; do [ -z "$i" ] || podman rmi -f "$i" >/dev/null 2>&1 || true; done
    comm -13 <(echo "$dangling_before") <(podman images -q --filter dangling=true | sort) \
        | xargs -r podman rmi -f >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
trap "exit 130" INT TERM

# User, exposed ports and regular files of an image: nothing but its binaries.
check_image() {
    local image="$1" want_ports="$2" want_files="$3" user ports files
    user="$(podman image inspect "$image" --format '{{.Config.User}}')"
    [ "$user" = "65532:65532" ] && pass "$image runs as user $user" || fail "$image user is '$user'"
    ports="$(podman image inspect "$image" --format '{{range $p, $_ := .Config.ExposedPorts}}{{$p}} {{end}}')"
    [ "$ports" = "$want_ports" ] && pass "$image exposes $ports" || fail "$image exposes '$ports'"
    podman create --name "$name-files" "$image" >/dev/null
    files="$(podman export "$name-files" | tar -tv | awk '/^-/ {print $NF}' | sort | tr '\n' ' ')"
    podman rm "$name-files" >/dev/null
    [ "$files" = "$want_files" ] && pass "$image holds only $files" || fail "$image files: $files"
}

check_image "$image" "22122/tcp 23000/tcp 8888/tcp " "usr/local/bin/fdfs usr/local/bin/fdfs-node "
size="$(podman image inspect "$image" --format '{{.Size}}')"
[ "$size" -lt 30000000 ] && pass "image is $size bytes" || fail "image is $size bytes"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
t="$(free_port)"
s="$(free_port)"
podman "${runtime[@]}" run -d --name "$name" \
    --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
    -p "127.0.0.1:$t:$t" -p "127.0.0.1:$s:$s" \
    "$image" local --data-dir /var/lib/fdfs/local \
    --tracker-addr "0.0.0.0:$t" --storage-ip 0.0.0.0 --storage-port "$s" >/dev/null
for _ in $(seq 1 120); do
    if podman logs "$name" 2>/dev/null | grep -qx ready; then break; fi
    if [ "$(podman inspect "$name" --format '{{.State.Running}}')" != true ]; then break; fi
    sleep 0.5
done
if podman logs "$name" 2>/dev/null | grep -qx ready; then
    pass "fdfs-node local is ready in the container (tracker :$t, storage :$s)"
else
    fail "fdfs-node local did not get ready"
    podman logs "$name" 2>&1 | tail -20
    echo "$passed passed, $failed failed"
    exit 1
fi

head -c 100000 /dev/urandom >"$work/upload.bin"
if id="$(RUST_BACKTRACE=0 "$cli" --tracker "127.0.0.1:$t" upload "$work/upload.bin")"; then
    pass "upload from the host: $id"
    if RUST_BACKTRACE=0 "$cli" --tracker "127.0.0.1:$t" download "$id" "$work/download.bin" >/dev/null \
        && cmp -s "$work/upload.bin" "$work/download.bin"; then
        pass "download from the host returns the same 100000 bytes"
    else
        fail "download from the host"
    fi
else
    fail "upload from the host"
fi

podman stop -t 5 "$name" >/dev/null
code="$(podman inspect "$name" --format '{{.State.ExitCode}}')"
podman rm "$name" >/dev/null
[ "$code" = 0 ] && pass "stops cleanly on SIGTERM (exit 0)" || fail "exit code $code after SIGTERM"

# The operator image: the static binary alone, non-root, port 8080; it takes its settings
# from the environment as the chart sets them and stops at connecting to the Kubernetes API
# (there is none here).
op_image=""
if [ "${IMAGE_TEST_OPERATOR:-1}" = 0 ]; then
    echo "skip the fdfs-operator image (IMAGE_TEST_OPERATOR=0)"
else
    op_image="$(IMAGE_PREFIX=localhost IMAGE_TAG="$tag" images/build.sh fdfs-operator | sed -n 's/^image //p')"
    [ -n "$op_image" ] && pass "images/build.sh built $op_image" || fail "images/build.sh fdfs-operator"
fi
if [ -n "$op_image" ]; then
    check_image "$op_image" "8080/tcp " "usr/local/bin/fdfs-operator "
    out="$(podman "${runtime[@]}" run --rm --name "$name-operator" --read-only --cap-drop ALL \
        --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
        -e FDFS_LOG_FORMAT=json -e FDFS_OPERATOR_LISTEN=0.0.0.0:8080 -e FDFS_CLUSTER_DOMAIN=cluster.local \
        -e FDFS_WATCH_NAMESPACES=fdfs -e FDFS_LEASE_NAME=fdfs-operator -e POD_NAME=op-0 -e POD_NAMESPACE=fdfs-system \
        -e RUST_BACKTRACE=0 "$op_image" 2>&1 || true)"
    if grep -q 'connecting to the Kubernetes API' <<<"$out"; then
        pass "operator starts read-only without capabilities and stops at the missing Kubernetes API"
    else
        fail "operator in its image: $out"
    fi
fi
leftover="$(podman ps -a --filter "name=$name" --format '{{.Names}}')"
[ -z "$leftover" ] && pass "no container left" || fail "containers left: $leftover"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
