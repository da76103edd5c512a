#!/usr/bin/env python3
"""okta-phone-migrate benchmark, against the built-in simulator on 127.0.0.1.

Five measurements, printed side by side at the end of one run:

  M1  limit utilisation: requests per rate-limit window / permitted share,
      at --rate-share 50% and 100%, with the tool as the only client.
  M2  shared bucket: a background client spends part of the same bucket;
      the tool's 429s and row outcomes.
  M3  latency-bound: rows/s against concurrency / (3 requests x latency).
  M4  the same rows through Okta's Node SDK one user at a time: wall-time
      ratio at the same limit and latency, a fresh simulator per contender.
  M5  peak RSS of `validate` over 100k and 1M rows, and of `plan` over
      100k rows against the simulator.

Every process started here is stopped by its PID on exit; every request goes
to 127.0.0.1; every loop is bounded in count and time.
Run through bench/run.sh (which builds the release binary and installs the
Node SDK), or directly: python3 bench/bench.py [--quick] [--bin PATH].
"""

from __future__ import annotations

import argparse
import atexit
import http.client
import json
import math
import os
import platform
import select
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

sys.dont_write_bytecode = True  # leave no __pycache__ in bench/
sys.path.insert(0, str(Path(__file__).resolve().parent))
import gen  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
TOKEN = "bench-token-not-a-secret"
WINDOW_S = 10  # rate-limit window; headers carry whole seconds
REQS_PER_ROW = 3  # list, delete, enroll for a row given by user id

FULL = {
    "m1_rows": 2000, "m1_limit": 1000, "m1_latency": 20,
    "m2_rows": 1000, "m2_limit": 1500, "m2_bg_fraction": 0.25, "m2_bg_burst_s": 1.0,
    "m3_rows": 2000, "m3_latency": 50, "m3_concurrency": [8, 32],
    "m4_rows": 600, "m4_limit": 600, "m4_latency": 50, "m4_rows_high": 300,
    "m5_validate_rows": [100_000, 1_000_000], "m5_plan_rows": 100_000,
}
QUICK = {
    "m1_rows": 400, "m1_limit": 400, "m1_latency": 20,
    "m2_rows": 300, "m2_limit": 600, "m2_bg_fraction": 0.25, "m2_bg_burst_s": 1.0,
    "m3_rows": 600, "m3_latency": 50, "m3_concurrency": [8, 32],
    "m4_rows": 150, "m4_limit": 600, "m4_latency": 50, "m4_rows_high": 100,
    "m5_validate_rows": [10_000, 100_000], "m5_plan_rows": 10_000,
}

# ----- process hygiene ------------------------------------------------------

_PROCS: list[subprocess.Popen] = []


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def stop(p: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 5 s; children first (e.g. under
    /usr/bin/time), each by its own PID."""
    if p.poll() is not None:
        return
    for child in _children(p.pid):
        try:
            os.kill(child, signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        p.terminate()
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        for child in _children(p.pid):
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
        p.kill()
        p.wait(timeout=5)
    except ProcessLookupError:
        pass


def _stop_all() -> None:
    while _PROCS:
        stop(_PROCS.pop())


atexit.register(_stop_all)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for children: no proxy can divert loopback traffic."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.setdefault("RUST_LOG", "warn")
    env.update(extra)
    return env


def spawn(args: list[str], **kw) -> subprocess.Popen:
    p = subprocess.Popen(args, **kw)
    _PROCS.append(p)
    return p


def forget(p: subprocess.Popen) -> None:
    if p in _PROCS:
        _PROCS.remove(p)


COMMANDS: list[str] = []


def record(args: list[str], env_note: str = "") -> None:
    COMMANDS.append((env_note + " " if env_note else "") + shlex.join(str(a) for a in args))


# ----- the simulator --------------------------------------------------------

_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Sim:
    def __init__(self, binary: str, org: Path, limit: int, latency_ms: int,
                 concurrency: int, logdir: Path, name: str):
        args = [binary, "simulator", "--port", "0", "--org", str(org), "--token", TOKEN,
                "--rate-limit", str(limit), "--window", str(WINDOW_S),
                "--concurrency", str(concurrency), "--latency-ms", str(latency_ms)]
        record(args)
        self.err = open(logdir / f"{name}.sim.stderr", "w")
        self.p = spawn(args, stdout=subprocess.PIPE, stderr=self.err, env=clean_env())
        ready, _, _ = select.select([self.p.stdout], [], [], 60)
        line = self.p.stdout.readline().decode().strip() if ready else ""
        # The simulator's log times are ms since it started, which is just
        # before it prints its URL: this maps them to the wall clock (to a
        # few ms), which is what its whole-second headers are rounded on.
        self.wall0 = time.time()
        if not line.startswith("http://127.0.0.1:"):
            stop(self.p)
            raise SystemExit(f"simulator did not start (first line {line!r}); see {self.err.name}")
        self.url = line
        self.port = int(line.rsplit(":", 1)[1])
        self.limit = limit
        self.latency_ms = latency_ms
        self.name = name
        self.logdir = logdir

    def get(self, path: str, timeout: float = 120) -> object:
        assert path.startswith("/__sim/")
        with _NO_PROXY_OPENER.open(self.url + path, timeout=timeout) as r:
            return json.load(r)

    def requests(self, save: Path | None = None) -> list[dict]:
        log = sorted(self.get("/__sim/requests"), key=lambda r: r["seq"])
        if save is not None:
            save.write_text(json.dumps(log))
        return log

    def peak_rss_kb(self) -> int | None:
        try:
            for line in Path(f"/proc/{self.p.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return None

    def close(self) -> None:
        stop(self.p)
        forget(self.p)
        self.err.close()

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()


# ----- running the tool -----------------------------------------------------

def cpu_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = f[3] + f[4]
    return sum(f) - idle, sum(f)


class Load:
    """Machine load while a measurement runs: CPU busy share of all cores
    (ours included) and the 1-minute load average at the end. Other work on
    the machine (builds, test suites) shows up here."""

    def __enter__(self):
        self.b0 = cpu_busy()
        return self

    def __exit__(self, *_):
        b1 = cpu_busy()
        self.busy = (b1[0] - self.b0[0]) / max(1, b1[1] - self.b0[1])
        self.loadavg = float(Path("/proc/loadavg").read_text().split()[0])

    def as_dict(self) -> dict:
        return {"cpu_busy_all_cores": round(self.busy, 3), "loadavg_1m_end": self.loadavg}


def run_cmd(args: list[str], cwd: Path, name: str, timeout: float, env: dict,
            env_note: str = "", stdin_devnull: bool = True) -> dict:
    record(args, env_note)
    out = open(cwd / f"{name}.stdout", "w")
    err = open(cwd / f"{name}.stderr", "w")
    t0 = time.monotonic()
    p = spawn(args, cwd=cwd, stdout=out, stderr=err, env=env,
              stdin=subprocess.DEVNULL if stdin_devnull else None)
    try:
        rc = p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(p)
        rc = None
    wall = time.monotonic() - t0
    forget(p)
    out.close()
    err.close()
    return {"rc": rc, "wall_s": wall, "stdout": cwd / f"{name}.stdout",
            "stderr": cwd / f"{name}.stderr", "timed_out": rc is None}


def apply(binary: str, sim: Sim, csv_path: Path, workdir: Path, name: str, share: str,
          concurrency: int, timeout: float) -> dict:
    report = workdir / f"{name}.report.csv"
    summary = workdir / f"{name}.summary.json"
    for f in (report, summary):
        if f.exists():
            f.unlink()
    args = [binary, "apply", "--org-url", sim.url, "--input", str(csv_path),
            "--default-region", "US", "--activate", "--yes", "--rate-share", share,
            "--concurrency", str(concurrency), "--report", str(report),
            "--summary-json", str(summary), "-q"]
    res = run_cmd(args, workdir, name, timeout, clean_env(OKTA_CLIENT_TOKEN=TOKEN),
                  env_note="OKTA_CLIENT_TOKEN=...")
    res["summary"] = json.loads(summary.read_text()) if summary.exists() else None
    res["outcomes"] = report_outcomes(report)
    return res


def report_outcomes(report: Path) -> Counter:
    import csv
    c: Counter = Counter()
    if report.exists():
        with report.open(newline="") as f:
            for row in csv.DictReader(f):
                c[row["outcome"]] += 1
    return c


def check_state(sim: Sim, rows: int, pool: list[str]) -> dict:
    """How many CSV users hold exactly one ACTIVE sms factor on their new
    number (the end state both the tool and the SDK script must reach)."""
    state = sim.get("/__sim/state")
    by_id = {u["id"]: u for u in state["users"]}
    ok = 0
    for i in range(rows):
        u = by_id.get(gen.user_id(i))
        if not u:
            continue
        sms = [f for f in u["factors"] if f.get("factorType") == "sms"]
        if (len(sms) == 1 and sms[0].get("status") == "ACTIVE"
                and sms[0].get("profile", {}).get("phoneNumber") == pool[2 * i + 1]):
            ok += 1
    return {"rows": rows, "on_new_number": ok}


# ----- analysing a request log ---------------------------------------------

def windows(log: list[dict], latency_ms: int, is_other=None) -> list[dict]:
    """Rebuilds the simulator's rate-limit windows of the factor bucket from
    the log: a window opens with the first request after the previous one
    closed and lasts WINDOW_S. A request counts when it takes its slot, which
    the simulator does after the configured latency, so each is placed at
    tStartMs + latency."""
    w_ms = WINDOW_S * 1000
    out: list[dict] = []
    for r in sorted(log, key=lambda r: r["tStartMs"]):
        t = r["tStartMs"] + latency_ms
        if not out or t >= out[-1]["start"] + w_ms:
            out.append({"start": t, "ok": 0, "throttled": 0, "times": [],
                        "other_ok": 0, "other_throttled": 0})
        w = out[-1]
        other = bool(is_other and is_other(r))
        if r["status"] == 429:
            w["other_throttled" if other else "throttled"] += 1
        else:
            w["other_ok" if other else "ok"] += 1
        if not other:
            w["times"].append(t)
    return out


def gaps_report(times: list[int], top: int = 5) -> list[tuple[int, int]]:
    ts = sorted(times)
    g = sorted(((b - a, a) for a, b in zip(ts, ts[1:])), reverse=True)
    return g[:top]


def reset_rounding(ws: list[dict], wall0: float | None) -> list[float]:
    """For each window, how much later than its true end the simulator's
    `X-Rate-Limit-Reset` says it ends: the reset is the window's end rounded
    up to a whole second."""
    if wall0 is None:
        return []
    out = []
    for w in ws:
        end = wall0 + (w["start"] / 1000) + WINDOW_S
        out.append(math.ceil(end) - end)
    return out


def utilisation(log: list[dict], latency_ms: int, permitted: float, wall0: float | None = None) -> dict:
    ws = windows(log, latency_ms)
    full = ws[:-1] if len(ws) > 1 else ws
    per = [w["ok"] / permitted for w in full]
    first = ws[0]["start"]
    last = max(max(w["times"]) for w in ws)
    total_ok = sum(w["ok"] for w in ws)
    span_windows = (last - first) / (WINDOW_S * 1000)
    # Pacing inside windows: median gap between consecutive requests of a
    # full window, against the even spacing the permitted share allows.
    inner = []
    for w in full:
        ts = sorted(w["times"])
        inner.extend(b - a for a, b in zip(ts, ts[1:]))
    ideal_gap = WINDOW_S * 1000 / permitted
    tails = []
    for w in full:
        end = w["start"] + WINDOW_S * 1000
        tails.append(end - max(w["times"]))
    # What a pacer that spreads the share up to `Reset - Date` (whole
    # seconds: Reset rounded up, Date rounded down, on average 0.5 s early)
    # would achieve per window: W / (W + rounding of Reset + 0.5 s).
    rounding = reset_rounding(full, wall0)
    predicted = [WINDOW_S / (WINDOW_S + r + 0.5) for r in rounding]
    return {
        "reset_rounding_s": rounding,
        "predicted_util_from_header_rounding": statistics.mean(predicted) if predicted else None,
        "windows": len(ws),
        "full_windows": len(full),
        "per_window_ok": [w["ok"] for w in ws],
        "per_window_429": [w["throttled"] for w in ws],
        "util_full_mean": statistics.mean(per) if per else 0.0,
        "util_full_min": min(per) if per else 0.0,
        "util_overall": (total_ok / span_windows / permitted) if span_windows > 0 else 0.0,
        "throttled": sum(w["throttled"] for w in ws),
        "mean_gap_ms": statistics.mean(inner) if inner else None,
        "median_gap_ms": statistics.median(inner) if inner else None,
        "ideal_gap_ms": ideal_gap,
        # The horizon the pacer spread the permitted share over: mean gap x
        # permitted requests. Equal to the window when pacing is exact.
        "implied_horizon_s": (statistics.mean(inner) * permitted / 1000) if inner else None,
        "idle_before_window_end_ms": tails,
        "largest_gaps_ms": gaps_report([t for w in ws for t in w["times"]]),
        "window_starts_ms": [w["start"] for w in ws],
    }


def stall_intervals(log: list[dict], latency_ms: int, conc: int) -> dict:
    """Moments when the simulator held at most one of the tool's requests
    while rows were still waiting (between the first and the last 10% of the
    run's requests), with their position in the rate-limit window."""
    events = sorted([(r["tStartMs"], 1) for r in log] + [(r["tEndMs"], -1) for r in log])
    starts = sorted(r["tStartMs"] for r in log)
    lo, hi = starts[len(starts) // 10], starts[-len(starts) // 10]
    ws = [w["start"] for w in windows(log, latency_ms)]
    cur, prev, out = 0, events[0][0], []
    for t, d in events:
        if cur <= 1 and t > prev and lo <= prev <= hi:
            out.append((prev, t - prev))
        cur += d
        prev = t
    merged: list[list[int]] = []
    for t, dur in out:
        if merged and t <= merged[-1][0] + merged[-1][1] + 1:
            merged[-1][1] = t + dur - merged[-1][0]
        else:
            merged.append([t, dur])
    big = [m for m in merged if m[1] >= 5]

    def since_window(t: int) -> int:
        return t - max([w for w in ws if w <= t], default=ws[0])
    return {"count": len(big), "total_ms": sum(m[1] for m in big),
            "examples": [{"t_ms": m[0], "ms": m[1], "ms_after_window_open": since_window(m[0])}
                         for m in sorted(big, key=lambda m: -m[1])[:8]],
            "window_starts_ms": ws}


# ----- the background client of M2 -----------------------------------------

class Background(threading.Thread):
    """Spends `per_window` requests of the factor bucket every window, in
    bursts every `burst_s` seconds, listing the factors of a user outside the
    CSV. Bounded by `max_requests`, `max_seconds` and `stop_event`."""

    def __init__(self, port: int, user_id: str, per_window: int, burst_s: float,
                 max_requests: int, max_seconds: float):
        super().__init__(daemon=True)
        self.port = port
        self.path = f"/api/v1/users/{user_id}/factors"
        self.per_burst = max(1, round(per_window * burst_s / WINDOW_S))
        self.burst_s = burst_s
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.stop_event = threading.Event()
        self.statuses: Counter = Counter()
        self.errors = 0

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = {"Authorization": f"SSWS {TOKEN}", "Accept": "application/json"}
        start = time.monotonic()
        deadline = start + self.max_seconds
        sent = 0
        next_burst = start
        while not self.stop_event.is_set() and sent < self.max_requests and time.monotonic() < deadline:
            for _ in range(self.per_burst):
                if sent >= self.max_requests:
                    break
                sent += 1
                try:
                    conn.request("GET", self.path, headers=headers)
                    resp = conn.getresponse()
                    resp.read()
                    self.statuses[resp.status] += 1
                except (OSError, http.client.HTTPException):
                    self.errors += 1
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                    if self.errors > 50:
                        return
            next_burst += self.burst_s
            self.stop_event.wait(max(0.0, next_burst - time.monotonic()))
        conn.close()


# ----- the measurements -----------------------------------------------------

def make_rows(work: Path, rows: int, pool: list[str], tag: str, extra_users: int = 0,
              distinct: bool = True) -> tuple[Path, Path]:
    org = work / f"org-{tag}.json"
    csv_path = work / f"rows-{tag}.csv"
    gen.write_org_and_csv(org, csv_path, rows, pool, extra_users=extra_users, distinct=distinct)
    return org, csv_path


def verify_numbers(binary: str, work: Path) -> tuple[list[int], dict]:
    """Keeps the area codes whose 555-0100 and 555-0199 the tool's own
    `validate` accepts; two impossible codes are added as a control that
    validate must reject."""
    controls = [211, 999]
    codes = gen.AREA_CODES + controls
    probe = work / "numbers-probe.csv"
    gen.write_probe(probe, codes)
    res = run_cmd([binary, "validate", "--input", str(probe), "--default-region", "US", "-q"],
                  work, "numbers-probe", 120, clean_env())
    bad_rows = set()
    for line in res["stdout"].read_text().splitlines():
        if line.startswith("row ") and ": invalid:" in line:
            bad_rows.add(int(line.split()[1].rstrip(":")))
    row_codes = gen.probe_rows(codes)
    bad_codes = {row_codes[r - 1] for r in bad_rows}
    good = [c for c in gen.AREA_CODES if c not in bad_codes]
    info = {"area_codes_tried": len(gen.AREA_CODES), "area_codes_valid": len(good),
            "numbers": 100 * len(good), "controls_rejected": sorted(set(controls) & bad_codes),
            "validate_rc": res["rc"]}
    if set(controls) - bad_codes:
        raise SystemExit(f"validate accepted a control area code: {info}")
    return good, info


def m1(binary: str, work: Path, cfg: dict, pool: list[str]) -> dict:
    rows, limit, lat = cfg["m1_rows"], cfg["m1_limit"], cfg["m1_latency"]
    org, csv_path = make_rows(work, rows, pool, f"m1-{rows}")
    out = {"rows": rows, "limit": limit, "window_s": WINDOW_S, "latency_ms": lat, "runs": {}}
    for share in ("50%", "100%"):
        frac = float(share.rstrip("%")) / 100
        permitted = frac * limit
        expected = rows * REQS_PER_ROW / permitted * WINDOW_S
        name = f"m1-share{share.rstrip('%')}"
        with Sim(binary, org, limit, lat, 200, work, name) as sim:
            with Load() as ld:
                res = apply(binary, sim, csv_path, work, name, share, 8, expected * 2 + 60)
            log = sim.requests(work / f"{name}.requests.json")
            state = check_state(sim, rows, pool)
        u = utilisation(log, lat, permitted, sim.wall0)
        out["runs"][share] = {
            "permitted_per_window": permitted, "wall_s": res["wall_s"], "rc": res["rc"],
            "outcomes": dict(res["outcomes"]), "requests_logged": len(log),
            "summary_throttled": (res["summary"] or {}).get("throttled"), "state": state,
            "load": ld.as_dict(), **u,
        }
        print(f"  M1 share {share}: {u['util_full_mean']:.3f} of the permitted {permitted:.0f}/window "
              f"(min {u['util_full_min']:.3f}, overall {u['util_overall']:.3f}), "
              f"429s {u['throttled']}, wall {res['wall_s']:.1f}s", flush=True)
    return out


def m2(binary: str, work: Path, cfg: dict, pool: list[str]) -> dict:
    rows, limit = cfg["m2_rows"], cfg["m2_limit"]
    lat = cfg["m1_latency"]
    org, csv_path = make_rows(work, rows, pool, f"m2-{rows}", extra_users=1)
    bg_user = gen.user_id(rows)
    out = {"rows": rows, "limit": limit, "window_s": WINDOW_S, "latency_ms": lat, "runs": {}}
    # (tool share, background fraction of L per window, seconds between its
    # bursts): an even background at the default share and at 100%, then one
    # big burst per window while the tool takes everything else.
    cases = [("50%", cfg["m2_bg_fraction"], cfg["m2_bg_burst_s"]),
             ("100%", cfg["m2_bg_fraction"], cfg["m2_bg_burst_s"]),
             ("100%", 0.4, float(WINDOW_S))]
    for share, frac_bg, burst in cases:
        frac = float(share.rstrip("%")) / 100
        tool_rate = max(0.05, frac - frac_bg) * limit if frac < 1 else (1 - frac_bg) * limit
        expected = rows * REQS_PER_ROW / tool_rate * WINDOW_S
        key = f"share {share}, background {round(frac_bg * limit)}/window every {burst:g}s"
        name = f"m2-share{share.rstrip('%')}-bg{round(frac_bg * 100)}-every{burst:g}s"
        with Sim(binary, org, limit, lat, 200, work, name) as sim:
            bg = Background(sim.port, bg_user, round(frac_bg * limit), burst,
                            max_requests=int(limit * (expected * 3 + 120) / WINDOW_S),
                            max_seconds=expected * 3 + 120)
            bg.start()
            time.sleep(1.5)  # the bucket is already being spent when the tool starts
            with Load() as ld:
                res = apply(binary, sim, csv_path, work, name, share, 8, expected * 3 + 60)
            load = ld.as_dict()
            bg.stop_event.set()
            bg.join(timeout=15)
            log = sim.requests(work / f"{name}.requests.json")
            state = check_state(sim, rows, pool)
        tool_log = [r for r in log if bg_user not in r["path"]]
        bg_log = [r for r in log if bg_user in r["path"]]
        t0 = min(r["tStartMs"] for r in tool_log)
        t1 = max(r["tStartMs"] for r in tool_log)
        tool_429 = sum(1 for r in tool_log if r["status"] == 429)
        bg_during = [r for r in bg_log if t0 <= r["tStartMs"] <= t1]
        # Windows are rebuilt from the whole log (the background client
        # opened the first one); those the tool was active in are kept.
        ws = [w for w in windows(log, lat, is_other=lambda r: bg_user in r["path"])
              if w["times"] and w["start"] + WINDOW_S * 1000 > t0 and w["start"] <= t1]
        bad = {k: v for k, v in res["outcomes"].items() if k != "updated"}
        run = {
            "wall_s": res["wall_s"], "rc": res["rc"], "outcomes": dict(res["outcomes"]),
            "rows_not_updated": sum(bad.values()), "tool_requests": len(tool_log),
            "tool_429": tool_429, "tool_429_pct": 100.0 * tool_429 / max(1, len(tool_log)),
            "summary_throttled": (res["summary"] or {}).get("throttled"),
            "bg_requests": sum(bg.statuses.values()), "bg_429": bg.statuses.get(429, 0),
            "bg_errors": bg.errors, "state": state,
            "tool_ok_per_window": [w["ok"] for w in ws],
            "tool_429_per_window": [w["throttled"] for w in ws],
            "bg_ok_per_window": [w["other_ok"] for w in ws],
            "bg_429_per_window": [w["other_throttled"] for w in ws],
            "tool_rate_per_window": len([r for r in tool_log if r["status"] != 429])
                                    / max(1e-9, (t1 - t0) / (WINDOW_S * 1000)),
            "bg_rate_per_window": len([r for r in bg_during if r["status"] != 429])
                                  / max(1e-9, (t1 - t0) / (WINDOW_S * 1000)),
            "bucket_use_full_windows": [(w["ok"] + w["other_ok"]) / limit for w in ws[:-1]],
            "load": load,
        }
        run["tool_429_timeline_ms"] = [r["tStartMs"] - t0 for r in tool_log if r["status"] == 429][:20]
        run.update({"share": share, "bg_per_window": round(frac_bg * limit), "bg_burst_every_s": burst})
        out["runs"][key] = run
        print(f"  M2 {key}: tool 429s {tool_429}/{len(tool_log)} ({run['tool_429_pct']:.2f}%), "
              f"rows not updated {run['rows_not_updated']}, tool {run['tool_rate_per_window']:.0f}/window, "
              f"background {run['bg_rate_per_window']:.0f}/window (its 429s {run['bg_429']}), "
              f"wall {res['wall_s']:.1f}s", flush=True)
    return out


def m3(binary: str, work: Path, cfg: dict, pool: list[str]) -> dict:
    rows, lat = cfg["m3_rows"], cfg["m3_latency"]
    limit = 1_000_000
    org, csv_path = make_rows(work, rows, pool, f"m3-{rows}")
    out = {"rows": rows, "limit": limit, "latency_ms": lat, "runs": {}}
    for conc in cfg["m3_concurrency"]:
        theory = conc / (REQS_PER_ROW * lat / 1000)
        name = f"m3-c{conc}"
        with Sim(binary, org, limit, lat, 500, work, name) as sim:
            with Load() as ld:
                res = apply(binary, sim, csv_path, work, name, "50%", conc, rows / theory * 4 + 60)
            log = sim.requests(work / f"{name}.requests.json")
            state = check_state(sim, rows, pool)
        span = (max(r["tEndMs"] for r in log) - min(r["tStartMs"] for r in log)) / 1000
        wall_tool = (res["summary"] or {}).get("wall_time_ms", 0) / 1000
        # In-flight profile: how many requests the simulator held at once.
        events = sorted([(r["tStartMs"], 1) for r in log] + [(r["tEndMs"], -1) for r in log])
        cur = 0
        area = 0.0
        prev = events[0][0]
        for t, d in events:
            area += cur * (t - prev)
            cur += d
            prev = t
        mean_in_flight = area / max(1, events[-1][0] - events[0][0])
        stalls = stall_intervals(log, lat, conc)
        # Client turnaround inside a row: from the simulator's answer to one
        # request of a user to the arrival of that user's next request.
        by_user: dict[str, list[dict]] = {}
        for r in log:
            by_user.setdefault(r["path"].split("/")[4], []).append(r)
        turn = [b["tStartMs"] - a["tEndMs"] for rs in by_user.values()
                for a, b in zip(rs, rs[1:])]
        mean_req_ms = statistics.mean(r["tEndMs"] - r["tStartMs"] for r in log)
        run = {
            "concurrency": conc, "theory_rows_s": theory, "wall_s": res["wall_s"],
            "tool_wall_s": wall_tool, "request_span_s": span,
            "rows_s_process": rows / res["wall_s"], "rows_s_requests": rows / span,
            "ratio_process": rows / res["wall_s"] / theory, "ratio_requests": rows / span / theory,
            "mean_in_flight": mean_in_flight, "mean_server_ms": mean_req_ms,
            "outcomes": dict(res["outcomes"]), "throttled": sum(1 for r in log if r["status"] == 429),
            "state": state, "largest_gaps_ms": gaps_report([r["tStartMs"] for r in log]),
            "stalls": stalls,
            "theory_at_measured_server_ms": conc / (REQS_PER_ROW * mean_req_ms / 1000),
            "ratio_vs_measured_server_ms": rows / res["wall_s"] / (conc / (REQS_PER_ROW * mean_req_ms / 1000)),
            "turnaround_ms_median": statistics.median(turn) if turn else None,
            "turnaround_ms_p99": sorted(turn)[int(len(turn) * 0.99)] if turn else None,
            "process_overhead_s": res["wall_s"] - span,
            "load": ld.as_dict(),
        }
        out["runs"][str(conc)] = run
        print(f"  M3 concurrency {conc}: {run['rows_s_process']:.1f} rows/s vs theory {theory:.1f} "
              f"= {run['ratio_process']:.3f} (request span only: {run['ratio_requests']:.3f}); "
              f"mean in flight {mean_in_flight:.2f}", flush=True)
    return out


def m4(binary: str, work: Path, cfg: dict, pool: list[str]) -> dict:
    """Two settings: the rate-limited one (cfg m4_limit) and a limit so high
    that only latency and concurrency count."""
    lat = cfg["m4_latency"]
    out = {"latency_ms": lat, "window_s": WINDOW_S, "settings": {}}
    for rows, limit in ((cfg["m4_rows"], cfg["m4_limit"]), (cfg["m4_rows_high"], 1_000_000)):
        out["settings"][f"L={limit}"] = m4_setting(binary, work, pool, rows, limit, lat)
    return out


def m4_setting(binary: str, work: Path, pool: list[str], rows: int, limit: int, lat: int) -> dict:
    org, csv_path = make_rows(work, rows, pool, f"m4-{rows}")
    out = {"rows": rows, "limit": limit, "window_s": WINDOW_S, "latency_ms": lat, "runs": {}}
    node_script = BENCH / "sdk_baseline.mjs"
    name = f"m4-L{limit}-sdk"
    with Sim(binary, org, limit, lat, 75, work, name) as sim:
        args = ["node", str(node_script), "--org-url", sim.url, "--input", str(csv_path),
                "--max-seconds", "900"]
        with Load() as ld_sdk:
            res = run_cmd(args, work, name, 960, clean_env(OKTA_CLIENT_TOKEN=TOKEN),
                          env_note="OKTA_CLIENT_TOKEN=...")
        log = sim.requests(work / f"{name}.requests.json")
        state = check_state(sim, rows, pool)
    try:
        sdk = json.loads(res["stdout"].read_text().strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        sdk = {"error": res["stderr"].read_text()[-2000:]}
    out["runs"]["sdk"] = {"wall_s": res["wall_s"], "rc": res["rc"], "result": sdk, "state": state,
                          "requests": len(log), "throttled": sum(1 for r in log if r["status"] == 429),
                          "load": ld_sdk.as_dict()}
    print(f"  M4 L={limit}, {rows} rows: Node SDK {res['wall_s']:.1f}s, {sdk.get('updated')} updated, "
          f"429s {out['runs']['sdk']['throttled']}", flush=True)
    for share in ("50%", "100%"):
        name = f"m4-L{limit}-tool{share.rstrip('%')}"
        with Sim(binary, org, limit, lat, 75, work, name) as sim:
            with Load() as ld:
                r = apply(binary, sim, csv_path, work, name, share, 8, 600)
            log = sim.requests(work / f"{name}.requests.json")
            state = check_state(sim, rows, pool)
        out["runs"][f"tool {share}"] = {
            "wall_s": r["wall_s"], "rc": r["rc"], "outcomes": dict(r["outcomes"]), "state": state,
            "requests": len(log), "throttled": sum(1 for x in log if x["status"] == 429),
            "sdk_over_tool": res["wall_s"] / r["wall_s"], "load": ld.as_dict(),
        }
        print(f"  M4 L={limit}: tool --rate-share {share} {r['wall_s']:.1f}s; SDK/tool wall-time ratio "
              f"{res['wall_s'] / r['wall_s']:.2f}", flush=True)
    return out


def peak_rss(args: list[str], cwd: Path, name: str, timeout: float, env: dict,
             env_note: str = "") -> dict:
    """Peak RSS of one command, by /usr/bin/time -v when present, else from
    the kernel's rusage of the waited child (the same figure)."""
    timev = Path("/usr/bin/time")
    if timev.exists():
        tfile = cwd / f"{name}.time"
        res = run_cmd([str(timev), "-v", "-o", str(tfile)] + args, cwd, name, timeout, env, env_note)
        kb = None
        if tfile.exists():
            for line in tfile.read_text().splitlines():
                if "Maximum resident set size" in line:
                    kb = int(line.rsplit(":", 1)[1])
        res["peak_rss_kb"] = kb
        res["method"] = "/usr/bin/time -v"
        return res
    record(args, env_note)
    t0 = time.monotonic()
    with open(cwd / f"{name}.stdout", "w") as out, open(cwd / f"{name}.stderr", "w") as err:
        p = spawn(args, cwd=cwd, stdout=out, stderr=err, env=env, stdin=subprocess.DEVNULL)
        deadline = t0 + timeout
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                p.returncode = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                stop(p)
                ru = None
                break
            time.sleep(0.05)
        forget(p)
    return {"rc": p.returncode, "wall_s": time.monotonic() - t0,
            "peak_rss_kb": ru.ru_maxrss if ru else None, "method": "wait4 rusage",
            "stdout": cwd / f"{name}.stdout", "stderr": cwd / f"{name}.stderr"}


def m5(binary: str, work: Path, cfg: dict, pool: list[str]) -> dict:
    out: dict = {"validate": {}, "plan": {}}
    # Every user gets a number of its own, as in a real file; the tool
    # indexes numbers too (a number given to two users is flagged), so
    # repeated numbers would understate its memory.
    wide = gen.wide_pool(sorted({int(n[2:5]) for n in pool}))
    for rows in cfg["m5_validate_rows"]:
        csv_path = work / f"rows-m5-{rows}.csv"
        gen.write_org_and_csv(None, csv_path, rows, wide, distinct=True)
        res = peak_rss([binary, "validate", "--input", str(csv_path), "--default-region", "US", "-q"],
                       work, f"m5-validate-{rows}", 600, clean_env())
        out["validate"][str(rows)] = {"rows": rows, "rc": res["rc"], "wall_s": res["wall_s"],
                                      "peak_rss_kb": res["peak_rss_kb"], "method": res["method"],
                                      "input_bytes": csv_path.stat().st_size,
                                      "stderr_tail": res["stderr"].read_text()[-300:]}
        tail = out["validate"][str(rows)]["stderr_tail"]
        if f"{rows} rows: {rows} ready" not in tail:
            print(f"  M5 warning: validate did not find every row ready: {tail.strip()}", flush=True)
        print(f"  M5 validate {rows} rows: peak RSS {res['peak_rss_kb'] / 1024:.1f} MiB, "
              f"{res['wall_s']:.1f}s, exit {res['rc']}", flush=True)
        csv_path.unlink()
    small, big = (str(r) for r in cfg["m5_validate_rows"])
    a, b = out["validate"][small], out["validate"][big]
    if a["peak_rss_kb"] and b["peak_rss_kb"]:
        growth = (b["peak_rss_kb"] - a["peak_rss_kb"]) * 1024
        out["validate_growth_bytes"] = growth
        out["validate_bytes_per_row"] = growth / (b["rows"] - a["rows"])
        # Projected to 1M rows from the measured slope, for the quick profile.
        out["validate_growth_per_1m_rows_mb"] = out["validate_bytes_per_row"] * 1_000_000 / 1e6
        print(f"  M5 validate growth {small}->{big}: {growth / 1e6:.1f} MB, "
              f"{out['validate_bytes_per_row']:.1f} bytes/row", flush=True)

    rows = cfg["m5_plan_rows"]
    org, csv_path = make_rows(work, rows, wide, f"m5-plan-{rows}")
    with Sim(binary, org, 10_000_000, 0, 500, work, "m5-plan") as sim:
        report = work / "m5-plan.report.csv"
        if report.exists():
            report.unlink()
        args = [binary, "plan", "--org-url", sim.url, "--input", str(csv_path), "--default-region", "US",
                "--report", str(report), "-q"]
        res = peak_rss(args, work, "m5-plan", 900, clean_env(OKTA_CLIENT_TOKEN=TOKEN),
                       env_note="OKTA_CLIENT_TOKEN=...")
        sim_rss = sim.peak_rss_kb()
    outcomes = report_outcomes(report)
    out["plan"] = {"rows": rows, "rc": res["rc"], "wall_s": res["wall_s"], "peak_rss_kb": res["peak_rss_kb"],
                   "method": res["method"], "outcomes": dict(outcomes), "rows_s": rows / res["wall_s"],
                   "simulator_peak_rss_kb": sim_rss}
    print(f"  M5 plan {rows} rows: peak RSS {res['peak_rss_kb'] / 1024:.1f} MiB, {res['wall_s']:.1f}s, "
          f"outcomes {dict(outcomes)}", flush=True)
    for f in (org, csv_path, report):
        f.unlink(missing_ok=True)
    return out


# ----- report ---------------------------------------------------------------

def machine() -> dict:
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])

    def version(args: list[str]) -> str:
        try:
            return subprocess.run(args, capture_output=True, text=True, timeout=30).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"
    return {"nproc": os.cpu_count(), "cpu": cpu, "mem_gib": round(mem_kb / 1024 / 1024, 1),
            "kernel": platform.release(), "python": platform.python_version(),
            "node": version(["node", "--version"]), "rustc": version(["rustc", "--version"])}


def summary_table(res: dict) -> str:
    lines = ["", "==== okta-phone-migrate benchmark: results ====", ""]
    if "m1" in res:
        m = res["m1"]
        lines.append(f"M1 limit utilisation (L={m['limit']}/{m['window_s']}s, {m['rows']} rows, "
                     f"latency {m['latency_ms']} ms, target >= 0.95, zero 429s)")
        for share, r in m["runs"].items():
            verdict = "OK" if r["util_full_mean"] >= 0.95 and r["throttled"] == 0 else "MISS"
            lines.append(f"  share {share:>4}: per-window {r['util_full_mean']:.3f} (min {r['util_full_min']:.3f}, "
                         f"overall {r['util_overall']:.3f}), 429s {r['throttled']}, "
                         f"mean gap {r['mean_gap_ms']:.2f} ms vs even {r['ideal_gap_ms']:.2f} ms, i.e. the share "
                         f"spread over {r['implied_horizon_s']:.2f} s  [{verdict}]")
            if r.get("predicted_util_from_header_rounding"):
                lines.append(f"              Reset rounded up by {statistics.mean(r['reset_rounding_s']):.2f} s "
                             f"in this run: a pacer spreading up to Reset - Date would reach "
                             f"{r['predicted_util_from_header_rounding']:.3f}")
    if "m2" in res:
        m = res["m2"]
        lines.append(f"M2 shared bucket (L={m['limit']}/{m['window_s']}s, {m['rows']} rows, a background client "
                     f"in the same bucket; target: tool 429s <= 1%, no row fails)")
        for key, r in m["runs"].items():
            verdict = "OK" if r["tool_429_pct"] <= 1.0 and r["rows_not_updated"] == 0 else "MISS"
            use = r["bucket_use_full_windows"]
            lines.append(f"  {key}: tool 429s {r['tool_429']}/{r['tool_requests']} "
                         f"({r['tool_429_pct']:.2f}%), rows not updated {r['rows_not_updated']}; "
                         f"tool {r['tool_rate_per_window']:.0f}/window, background "
                         f"{r['bg_rate_per_window']:.0f}/window (its 429s {r['bg_429']}), bucket used "
                         f"{(statistics.mean(use) if use else 0):.2f} of L  [{verdict}]")
    if "m3" in res:
        m = res["m3"]
        lines.append(f"M3 latency-bound ({m['rows']} rows, latency {m['latency_ms']} ms, limit {m['limit']}; "
                     f"target >= 0.9)")
        for _, r in m["runs"].items():
            verdict = "OK" if r["ratio_process"] >= 0.9 else "MISS"
            lines.append(f"  concurrency {r['concurrency']:>2}: {r['rows_s_process']:.1f} rows/s vs "
                         f"{r['theory_rows_s']:.1f} = {r['ratio_process']:.3f} (requests only "
                         f"{r['ratio_requests']:.3f}; mean in flight {r['mean_in_flight']:.2f}; "
                         f"simulator answered in {r['mean_server_ms']:.1f} ms on average)  [{verdict}]")
    if "m4" in res:
        for _, m in res["m4"]["settings"].items():
            sdk = m["runs"]["sdk"]
            lines.append(f"M4 vs Node SDK one user at a time ({m['rows']} rows, L={m['limit']}/{m['window_s']}s, "
                         f"latency {m['latency_ms']} ms, fresh simulator each)")
            lines.append(f"  SDK: {sdk['wall_s']:.1f}s ({sdk['state']['on_new_number']}/{m['rows']} on new number, "
                         f"429s {sdk['throttled']})")
            for k, r in m["runs"].items():
                if k == "sdk":
                    continue
                lines.append(f"  {k}: {r['wall_s']:.1f}s ({r['state']['on_new_number']}/{m['rows']} on new number, "
                             f"429s {r['throttled']}), SDK/tool wall time = {r['sdk_over_tool']:.2f}x")
    if "m5" in res:
        m = res["m5"]
        lines.append("M5 memory (peak RSS)")
        for rows, r in m["validate"].items():
            lines.append(f"  validate {int(rows):>9,} rows: {r['peak_rss_kb'] / 1024:.1f} MiB ({r['wall_s']:.1f}s)")
        if "validate_bytes_per_row" in m:
            lines.append(f"  growth: {m['validate_growth_bytes'] / 1e6:.1f} MB = {m['validate_bytes_per_row']:.1f} "
                         f"bytes/row ({m['validate_growth_per_1m_rows_mb']:.1f} MB per 1M rows; target < 100 MB)")
        p = m["plan"]
        lines.append(f"  plan {p['rows']:,} rows: {p['peak_rss_kb'] / 1024:.1f} MiB ({p['wall_s']:.1f}s, "
                     f"{p['rows_s']:.0f} rows/s; simulator {((p['simulator_peak_rss_kb'] or 0) / 1024):.0f} MiB)")
    return "\n".join(lines)


def main() -> int:
    global WINDOW_S
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller inputs (about 5 minutes)")
    ap.add_argument("--bin", default=str(ROOT / "target" / "release" / "okta-phone-migrate"),
                    help="the okta-phone-migrate binary (default: the release build)")
    ap.add_argument("--out", default=str(BENCH / "out"), help="work folder (default bench/out)")
    ap.add_argument("--only", default="m1,m2,m3,m4,m5", help="comma-separated subset, e.g. m1,m3")
    ap.add_argument("--window", type=int, default=WINDOW_S,
                    help="rate-limit window in seconds (default 10); every limit is scaled with it, "
                         "so request rates stay the same")
    ap.add_argument("--m1-rows", type=int, help="rows for M1 (default 2000, quick 400)")
    args = ap.parse_args()

    binary = str(Path(args.bin).resolve())
    if not os.access(binary, os.X_OK):
        print(f"no binary at {binary}: run cargo build --release first (bench/run.sh does)", file=sys.stderr)
        return 2
    cfg = dict(QUICK if args.quick else FULL)
    if args.window != WINDOW_S:
        scale = args.window / WINDOW_S
        for k in ("m1_limit", "m2_limit", "m4_limit"):
            cfg[k] = round(cfg[k] * scale)
        WINDOW_S = args.window
    if args.m1_rows:
        cfg["m1_rows"] = args.m1_rows
    stamp = time.strftime("%Y%m%dT%H%M%S")
    work = Path(args.out) / stamp
    work.mkdir(parents=True, exist_ok=True)
    only = [s.strip() for s in args.only.split(",") if s.strip()]

    started = time.monotonic()
    res: dict = {"profile": "quick" if args.quick else "full", "config": cfg, "window_s": WINDOW_S,
                 "binary": binary,
                 "machine": machine(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    print(f"okta-phone-migrate benchmark ({res['profile']}), work folder {work}", flush=True)
    good_codes, numbers = verify_numbers(binary, work)
    res["numbers"] = numbers
    print(f"  numbers: {numbers['area_codes_valid']}/{numbers['area_codes_tried']} area codes valid per "
          f"`validate` ({numbers['numbers']} distinct numbers); controls rejected {numbers['controls_rejected']}",
          flush=True)
    pool = gen.number_pool(good_codes)
    steps = {"m1": m1, "m2": m2, "m3": m3, "m4": m4, "m5": m5}
    for key in only:
        t = time.monotonic()
        print(f"{key.upper()} ...", flush=True)
        res[key] = steps[key](binary, work, cfg, pool)
        res[key]["elapsed_s"] = time.monotonic() - t
    res["elapsed_s"] = time.monotonic() - started
    res["commands"] = COMMANDS
    (work / "results.json").write_text(json.dumps(res, indent=2, default=str))
    table = summary_table(res)
    (work / "results.txt").write_text(table + "\n")
    print(table)
    print(f"\ntotal {res['elapsed_s']:.0f}s; details in {work}/results.json, commands in it under \"commands\"")
    return 0


if __name__ == "__main__":
    sys.exit(main())
