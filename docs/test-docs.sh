#!/usr/bin/env bash
# Runs the commands of the user guides (docs/install.md, first-cluster.md, clients.md, gitops.md,
# migration.md, operations.md) as docs/tests/run_docs.py describes: the fdfs and fdfs-node
# commands against local clusters, kubectl's offline commands, the Python client snippet with
# py3fdfs; blocks that need a Kubernetes cluster are only checked to say so.
#
#   docs/test-docs.sh
#
# Needs root for its private network, mount and PID namespaces (loopback only).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

# The workspace's feature set, as scripts/test.sh builds it: after that build this is a no-op
# (one package alone would resolve other features and compile its dependencies again).
cargo build -q --workspace --bins --tests
# Cargo puts the binaries under the target triple when one is set (CI builds static ones).
bin="${CARGO_TARGET_DIR:-$repo/target}/${CARGO_BUILD_TARGET:+$CARGO_BUILD_TARGET/}debug"
venv="$(charts/chart-venv.sh)"
py="$(e2e/py/setup-venv.sh "${CARGO_TARGET_DIR:-$repo/target}/py-venv")"

# The guides name the tracker Services of the example clusters; here they are the local
# tracker.
hosts="$(mktemp)"
scratch="$(mktemp -d)"
trap 'rm -f "$hosts"; rmdir "$scratch"' EXIT
cat >"$hosts" <<HOSTS
127.0.0.1 localhost
127.0.0.1 main-tracker.fdfs.svc.cluster.local main-tracker.fdfs.svc main-tracker.fdfs
HOSTS

# The local clusters make 65,536 directories per storage: a tmpfs, private to the mount
# namespace, holds them and goes away with it.
export PATH="$bin:$venv/bin:$PATH"
unshare --net --mount --pid --fork --kill-child bash -c '
    set -euo pipefail
    ip link set lo up
    mount --bind "$1" /etc/hosts
    mount -t tmpfs -o size=2g tmpfs "$5"
    exec "$2" "$3" "$4" "$5"
' _ "$hosts" "$venv/bin/python" "$repo/docs/tests/run_docs.py" "$py" "$scratch"
