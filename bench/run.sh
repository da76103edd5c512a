#!/usr/bin/env bash
# One command for the whole benchmark: builds the release binary, installs
# the Node SDK baseline into bench/node_modules, then runs bench/bench.py
# (which starts and stops its own simulators on 127.0.0.1).
#
#   bench/run.sh            # full run, about 12 minutes on 2 cores
#   bench/run.sh --quick    # smaller inputs, about 3 minutes
#   OPM_BIN=/path/to/okta-phone-migrate bench/run.sh   # skip the build
#
# Other arguments go to bench.py (--only m1,m3, --out DIR, ...).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"

if [[ -z "${OPM_BIN:-}" ]]; then
  echo "== cargo build --release" >&2
  (cd "$root" && cargo build --release --locked)
  OPM_BIN="$root/target/release/okta-phone-migrate"
fi

if [[ ! -d "$here/node_modules/@okta/okta-sdk-nodejs" ]]; then
  echo "== npm ci (Okta Node SDK for the baseline)" >&2
  (cd "$here" && npm ci --no-audit --no-fund)
fi

if [[ ! -x /usr/bin/time ]] && [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
  echo "== apt-get install time (for peak RSS)" >&2
  apt-get install -y -q time >/dev/null || echo "(no /usr/bin/time: bench.py reads peak RSS from rusage instead)" >&2
fi

python3 "$here/bench.py" --bin "$OPM_BIN" "$@" &
pid=$!
# bench.py stops its own simulators and tools on exit; this stops bench.py
# itself if run.sh is interrupted.
trap 'kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT INT TERM
status=0
wait "$pid" || status=$?
trap - EXIT INT TERM
exit "$status"
