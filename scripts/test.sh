#!/usr/bin/env bash
# Runs every test of the workspace: unit, in-process servers, the recorded
# FastDFS V6.16.1 exchanges, multi-process e2e and the third-party py3fdfs client.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)" >&2; exit 1; }
command -v python3 >/dev/null || { apt-get update && apt-get install -y --no-install-recommends python3; }

# The Python venv with third-party FastDFS clients (installs python3-venv if missing).
e2e/py/setup-venv.sh >/dev/null
# e2e tests start these binaries as real processes. With the tests in the same build,
# dependencies get the features the tests need once, and the test run reuses it all.
cargo build --workspace --bins --tests

if cargo nextest --version >/dev/null 2>&1; then
    # Most tests wait on sockets and timers, not on the CPU: two per core.
    NEXTEST_TEST_THREADS="${NEXTEST_TEST_THREADS:-$(($(nproc) * 2))}" \
        cargo nextest run --workspace --no-fail-fast
else
    cargo test --workspace --no-fail-fast
fi
