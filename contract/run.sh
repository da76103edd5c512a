#!/usr/bin/env bash
# Contract check: every request the tool sends under /api/v1/ and every
# response the simulator returns there, validated against Okta's official
# management spec (../shared/okta-openapi/) by two independent validators:
# Stoplight Prism (a live proxy between the tool and the simulator) and
# openapi-core (the simulator's recorded request/response pairs, against the
# strict variant that enforces factorType and the E.164 pattern).
#
# First proves the check can fail (selftest.py), then runs the demo-sized
# run and the fault scenarios (drive.py). Reviewed spec exceptions:
# EXCEPTIONS.yaml. Installs what it needs into contract/ (pinned).
set -euo pipefail
cd "$(dirname "$0")"
HERE=$(pwd)
REPO=$(dirname "$HERE")
export OKTA_OPENAPI_DIR="${OKTA_OPENAPI_DIR:-$REPO/../shared/okta-openapi}"
# No analytics calls from npm packages' install or run.
export SCARF_ANALYTICS=false DO_NOT_TRACK=1

child=""
cleanup() {
    if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
        kill -TERM "$child" 2>/dev/null || true
        wait "$child" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 143' TERM INT

run() {
    "$@" &
    child=$!
    wait "$child"
    child=""
}

started=$(date +%s)
if [ ! -x .venv/bin/python ] || ! cmp -s requirements.txt .venv/requirements.installed; then
    echo "== contract: installing openapi-core (requirements.txt)"
    rm -rf .venv
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check --no-input -r requirements.txt
    cp requirements.txt .venv/requirements.installed
fi
if [ ! -x node_modules/.bin/prism ] || ! cmp -s package-lock.json node_modules/lock.installed; then
    echo "== contract: installing Stoplight Prism (package-lock.json)"
    npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
    cp package-lock.json node_modules/lock.installed
fi
echo "== contract: building the binary"
(cd "$REPO" && cargo build --locked --quiet)
BIN="$REPO/target/debug/okta-phone-migrate"

echo "== contract: selftest (the check must reject bad exchanges)"
run timeout 600 .venv/bin/python selftest.py --binary "$BIN"
echo "== contract: scenarios through Prism and openapi-core"
run timeout 1800 .venv/bin/python drive.py --binary "$BIN"
echo "== contract: done in $(( $(date +%s) - started ))s"
