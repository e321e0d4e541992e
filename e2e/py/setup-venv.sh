#!/usr/bin/env bash
# Create (or reuse) the Python venv that runs the third-party-client e2e tests.
#
# Usage: e2e/py/setup-venv.sh [VENV_DIR]      (default: <repo>/target/py-venv)
# Env:   PYTHON  interpreter to build the venv from (default: python3)
#
# Idempotent: an existing venv is reused when it imports fdfs_client and was built from
# the current requirements.txt (a sha256 stamp inside the venv records that).
# All progress goes to stderr; stdout's only (and last) line is the venv's python path,
# so callers can do:  py="$(e2e/py/setup-venv.sh)"
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$here/../.." && pwd)"
venv="${1:-$repo_root/target/py-venv}"
req="$here/requirements.txt"
python="${PYTHON:-python3}"
stamp="$venv/.requirements.sha256"

log() { echo "setup-venv: $*" >&2; }

want_stamp="$(sha256sum "$req" | cut -d' ' -f1)"

venv_is_current() {
    [[ -x "$venv/bin/python" ]] &&
        [[ -f "$stamp" && "$(cat "$stamp")" == "$want_stamp" ]] &&
        "$venv/bin/python" -c 'import fdfs_client' 2>/dev/null
}

# Debian/Ubuntu split venv/ensurepip out of the interpreter package; that is the one
# failure we can repair here. Anything else is reported as is.
apt_install() {
    local sudo=()
    if [[ "$(id -u)" -ne 0 ]]; then
        command -v sudo >/dev/null || { log "need root (or sudo) to apt-get install $*"; return 1; }
        sudo=(sudo)
    fi
    command -v apt-get >/dev/null || { log "venv/ensurepip missing and no apt-get to install $*"; return 1; }
    if [[ -z "${apt_updated:-}" ]]; then
        "${sudo[@]}" apt-get update >&2
        apt_updated=1
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y --no-install-recommends "$@" >&2
}

try_venv() {
    local err
    if err="$("$python" -m venv "$venv" 2>&1)"; then
        return 0
    fi
    # A failed ensurepip leaves a venv without pip behind; start clean on retry.
    rm -rf "$venv"
    printf '%s\n' "$err" >&2
    grep -qiE 'ensurepip|no module named (venv|ensurepip)|python3(\.[0-9]+)?-venv' <<<"$err" && return 2
    return 1
}

create_venv() {
    local rc=0
    try_venv || rc=$?
    [[ $rc -eq 2 ]] || return $rc
    log "'$python -m venv' failed: venv/ensurepip missing; installing python3-venv"
    apt_install python3-venv
    rc=0
    try_venv || rc=$?
    [[ $rc -eq 2 ]] || return $rc
    # python3-venv only covers Debian's default python3; a non-default python3.X needs its own.
    local ver
    ver="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    log "still missing; installing python$ver-venv"
    apt_install "python$ver-venv"
    "$python" -m venv "$venv" >&2
}

if venv_is_current; then
    log "reusing $venv"
else
    if [[ -d "$venv" && ! -x "$venv/bin/pip" ]]; then
        log "removing broken venv at $venv"
        rm -rf "$venv"
    fi
    if [[ ! -d "$venv" ]]; then
        log "creating $venv with $("$python" --version 2>&1)"
        mkdir -p "$(dirname "$venv")"
        create_venv
    fi
    log "installing $req"
    # The constraints file reaches pip's isolated build env too, pinning the sdist's build tools.
    PIP_CONSTRAINT="$req" PIP_DISABLE_PIP_VERSION_CHECK=1 \
        "$venv/bin/python" -m pip install --quiet -r "$req" >&2
    "$venv/bin/python" -c 'import fdfs_client' >&2
    printf '%s\n' "$want_stamp" >"$stamp"
fi

printf '%s\n' "$venv/bin/python"
