"""The contract check: runs the real binary through every scenario below,
with Stoplight Prism validating each exchange live and openapi-core
validating the simulator's recorded request/response pairs, and fails
naming the operation and field of every violation that EXCEPTIONS.yaml does
not cover.

    python drive.py --binary target/debug/okta-phone-migrate

Scenarios: the demo-sized run (samples/, plan + apply + a re-run), send-code
and enroll-if-missing, call factors, logins that break URLs, rate limits
(bucket and concurrency 429s), errors with restores (including a refused
restore), and a bad token.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from check_openapi import Checker, Operations, Violation
from harness import REPO, Stack

HERE = Path(__file__).resolve().parent
TOKEN = "contract-check-token"
TOOL_TIMEOUT = 300


def spec_dir() -> Path:
    d = os.environ.get("OKTA_OPENAPI_DIR")
    return Path(d) if d else REPO.parent / "shared" / "okta-openapi"


# ----- scenarios ------------------------------------------------------------


@dataclass
class ToolRun:
    command: str
    csv: str
    args: list[str]
    exit_code: int
    # row number -> expected outcome, checked so a scenario cannot silently
    # stop exercising what it claims to.
    outcomes: dict[int, str] = field(default_factory=dict)
    token: str = TOKEN


@dataclass
class Scenario:
    name: str
    runs: list[ToolRun]
    org: Path | dict = REPO / "samples" / "org.json"
    sim_args: list[str] = field(default_factory=list)
    faults: list[dict] = field(default_factory=list)


def sample_csv() -> str:
    return (REPO / "samples" / "users.csv").read_text(encoding="utf-8-sig")


def first_rows(n: int) -> str:
    lines = sample_csv().splitlines()
    return "\n".join(lines[: n + 1]) + "\n"


def respond(status: int, code: str, summary: str, causes=()) -> dict:
    return {"respond": {"status": status, "errorCode": code, "errorSummary": summary, "errorCauses": list(causes)}}


def user_json(n: int, login: str, number: str) -> dict:
    return {
        "id": f"00u1abc00000000000{n:02d}",
        "profile": {"login": login, "email": login, "firstName": "Test", "lastName": f"User{n}"},
        "factors": [{"factorType": "sms", "status": "ACTIVE", "profile": {"phoneNumber": number}}],
    }


SCENARIOS = [
    Scenario(
        "demo",
        [
            ToolRun("plan", sample_csv(), [], 1, {1: "would_update", 3: "unchanged", 13: "duplicate"}),
            ToolRun(
                "apply",
                sample_csv(),
                ["--activate", "--concurrency", "8"],
                1,
                {1: "updated", 3: "unchanged", 4: "no_factor", 5: "user_not_found", 13: "duplicate", 22: "updated"},
            ),
            ToolRun("apply", sample_csv(), ["--activate"], 1, {1: "unchanged", 22: "unchanged"}),
        ],
        # As `demo` runs it: a generous limit, so the run takes seconds.
        sim_args=["--rate-limit", "3000"],
    ),
    Scenario(
        "send-code-and-enroll",
        [
            ToolRun(
                "apply",
                "user,phone\n00u1abc0000000000001,+13105550141\ndara.nolan@example.com,+13105550144\n"
                "00u1abc0000000000006,+13105550146\n",
                ["--send-code", "--if-missing", "enroll", "--remove-recovery"],
                0,
                {1: "updated", 2: "enrolled", 3: "updated"},
            ),
        ],
    ),
    Scenario(
        "call-factors",
        [
            ToolRun("plan", "user,phone\nmarco.rossi@example.com,+13105550153\n", ["--also-call"], 0, {1: "would_update"}),
            ToolRun(
                "apply", "user,phone\nmarco.rossi@example.com,+13105550153\n", ["--activate", "--also-call"], 0, {1: "updated"}
            ),
            ToolRun(
                "apply",
                "user,phone,extension\nmarco.rossi@example.com,+13105550253,12\n",
                ["--activate", "--factor-type", "call"],
                0,
                {1: "updated"},
            ),
        ],
    ),
    Scenario(
        "logins",
        [
            ToolRun(
                "apply",
                "login,phone\npat+mfa@example.com,+12135550221\nlee#ops@example.com,+12135550222\n"
                "dept/kim@example.com,+12135550223\nq?x@example.com,+12135550224\n100%25@example.com,+12135550225\n"
                "kim,+12135550226\n",
                ["--activate"],
                1,
                {1: "updated", 2: "updated", 3: "updated", 4: "updated", 6: "user_not_found"},
            ),
        ],
        org={
            "users": [
                user_json(21, "pat+mfa@example.com", "+12135550121"),
                user_json(22, "lee#ops@example.com", "+12135550122"),
                user_json(23, "dept/kim@example.com", "+12135550123"),
                user_json(24, "q?x@example.com", "+12135550124"),
                user_json(25, "100%25@example.com", "+12135550125"),
                user_json(26, "kim@example.com", "+12135550126"),
            ]
        },
    ),
    Scenario(
        "rate-limits",
        [ToolRun("apply", first_rows(12), ["--activate", "--concurrency", "8"], 1, {1: "updated", 2: "updated"})],
        sim_args=["--concurrency", "3", "--latency-ms", "20"],
        faults=[
            {"match": {"op": "unenrollFactor"}, "action": {"rateLimited": {"limit": 100, "resetInSecs": 2}}, "times": 1},
            {"match": {"op": "getUser"}, "action": {"rateLimited": {"limit": 1000, "resetInSecs": 1}}, "times": 1},
            {"match": {"op": "enrollFactor"}, "action": {"rateLimited": {"limit": 100, "resetInSecs": 1}}, "times": 1, "skip": 2},
        ],
    ),
    Scenario(
        "errors-and-restores",
        [
            # One row at a time, in this order: a success first (the write
            # gate opens), and last the user left without the factor, since
            # that stops the run.
            ToolRun(
                "apply",
                "user,phone\n"
                "00u1abc0000000000010,+13105550150\n"  # enroll applied, answer 500
                "00u1abc0000000000012,+13105550152\n"  # delete applied, connection dropped
                "00u1abc0000000000001,+13105550141\n"  # enroll refused, restored
                "00u1abc0000000000015,+13105550155\n"  # list forbidden
                "00u1abc0000000000016,+13105550156\n"  # enroll 504, restored
                "00u1abc0000000000018,+18005550135\n"  # toll-free, refused by the simulator
                "00u1abc0000000000099,+13105550199\n"  # no such user
                "00u1abc0000000000006,+13105550146\n",  # enroll and restore refused
                ["--activate", "--concurrency", "1"],
                3,
                {
                    1: "updated",
                    2: "updated",
                    3: "failed_restored",
                    4: "failed",
                    5: "failed_restored",
                    6: "failed_restored",
                    7: "user_not_found",
                    8: "failed_unrestored",
                },
            ),
        ],
        faults=[
            {
                "match": {"op": "enrollFactor", "phone": "+13105550141"},
                "action": respond(400, "E0000001", "Api validation failed: factorEnrollRequest", ["Invalid Phone Number."]),
            },
            {
                "match": {"op": "enrollFactor", "userId": "00u1abc0000000000006"},
                "action": respond(400, "E0000098", "This phone number is invalid."),
            },
            {"match": {"op": "enrollFactor", "userId": "00u1abc0000000000010"}, "action": {"performThenFail": {"status": 500}}, "times": 1},
            {"match": {"op": "unenrollFactor", "userId": "00u1abc0000000000012"}, "action": "performThenDrop", "times": 1},
            {
                "match": {"op": "listFactors", "userId": "00u1abc0000000000015"},
                "action": respond(403, "E0000006", "You do not have permission to perform the requested action"),
            },
            {
                "match": {"op": "enrollFactor", "phone": "+13105550156"},
                "action": respond(504, "E0000067", "Factors Service Error."),
            },
        ],
    ),
    Scenario(
        "bad-token",
        [ToolRun("apply", first_rows(3), ["--activate"], 4, {}, token="not-the-right-token")],
    ),
]


# ----- exceptions -------------------------------------------------------------


@dataclass
class Exception_:
    id: str
    direction: str
    operations: list[str]
    statuses: list[int]
    field: re.Pattern
    message: re.Pattern
    validators: list[str]
    used: int = 0

    def covers(self, v: Violation) -> bool:
        return (
            (self.direction in ("any", v.direction))
            and ("*" in self.operations or v.operation in self.operations)
            and (not self.statuses or v.status in self.statuses)
            and bool(self.field.search(v.field))
            and bool(self.message.search(v.message))
            and ("*" in self.validators or any(v.validator.startswith(x) for x in self.validators))
        )


def load_exceptions(path: Path) -> list[Exception_]:
    doc = yaml.safe_load(path.read_text())
    out = []
    for e in doc["exceptions"]:
        for key in ("id", "reason", "source"):
            if not e.get(key):
                raise SystemExit(f"{path.name}: every exception needs {key!r}: {e}")
        out.append(
            Exception_(
                id=e["id"],
                direction=e.get("direction", "any"),
                operations=e.get("operations", ["*"]),
                statuses=e.get("statuses", []),
                field=re.compile(e.get("field", ".*")),
                message=re.compile(e.get("message", ".*")),
                validators=e.get("validators", ["*"]),
            )
        )
    return out


# ----- Prism's findings as violations ---------------------------------------


def prism_violations(records: list[dict], ops: Operations, spec_name: str) -> list[Violation]:
    out = []
    for r in records:
        path = r["path"].split("?", 1)[0]
        op, template = ops.find(r["method"], path)
        for v in r["violations"]:
            loc = [str(x) for x in v.get("location", [])]
            direction = loc[0] if loc and loc[0] in ("request", "response") else "response"
            rest = loc[1:] if loc and loc[0] in ("request", "response") else loc
            message = v.get("message", "")
            field_ = ".".join(rest) or ("status" if "status code" in message else direction)
            out.append(
                Violation(
                    f"prism:{spec_name}:{v.get('severity', '?').lower()}",
                    op,
                    r["method"],
                    template,
                    direction,
                    int(r["status"]),
                    field_,
                    message,
                )
            )
    return out


# ----- running ----------------------------------------------------------------


def run_tool(binary: Path, url: str, work: Path, n: int, run: ToolRun) -> tuple[int, list[dict], str]:
    inp = work / f"in-{n}.csv"
    inp.write_text(run.csv, encoding="utf-8")
    report = work / f"report-{n}.csv"
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(work), "OKTA_CLIENT_TOKEN": run.token}
    cmd = [
        str(binary),
        run.command,
        "--org-url",
        url,
        "--input",
        str(inp),
        "--report",
        str(report),
        "--default-region",
        "US",
        *run.args,
    ]
    p = subprocess.run(cmd, cwd=work, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TOOL_TIMEOUT)
    rows = []
    if report.exists():
        with report.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    return p.returncode, rows, p.stderr


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", type=Path, default=REPO / "target" / "debug" / "okta-phone-migrate")
    ap.add_argument("--only", help="run only the scenario with this name")
    ap.add_argument("--keep", type=Path, help="write the logs of every scenario here")
    a = ap.parse_args(argv)

    specs = spec_dir()
    prism_spec = specs / "tool-paths.yaml"
    strict_spec = specs / "tool-paths-strict.yaml"
    for s in (prism_spec, strict_spec):
        if not s.exists():
            print(f"contract: spec not found: {s} (set OKTA_OPENAPI_DIR)", file=sys.stderr)
            return 2
    checkers = [Checker(strict_spec), Checker(prism_spec)]
    ops = checkers[0].ops
    exceptions = load_exceptions(HERE / "EXCEPTIONS.yaml")

    failures: list[str] = []
    excepted: dict[str, int] = {}
    total_exchanges = 0
    started = time.monotonic()
    scenarios = [s for s in SCENARIOS if not a.only or s.name == a.only]
    for sc in scenarios:
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f"contract-{sc.name}-") as tmp:
            work = Path(tmp)
            org = sc.org
            if isinstance(org, dict):
                org_path = work / "org.json"
                org_path.write_text(json.dumps(org))
            else:
                org_path = org
            with Stack(a.binary, prism_spec, org_path, TOKEN, sc.sim_args) as st:
                st.faults(sc.faults)
                for n, run in enumerate(sc.runs, 1):
                    code, rows, err = run_tool(a.binary, st.url, work, n, run)
                    label = f"{sc.name} run {n} ({run.command} {' '.join(run.args)})"
                    if code != run.exit_code:
                        failures.append(f"{label}: exit {code}, expected {run.exit_code}\n{err[-2000:]}")
                    got = {int(r["row"]): r["outcome"] for r in rows}
                    for row, want in run.outcomes.items():
                        if got.get(row) != want:
                            failures.append(f"{label}: row {row} ended {got.get(row)!r}, expected {want!r}")
                log = st.sim_log()
                prism_records = st.recorder.take() if st.recorder else []
                prism_lines = st.prism_log()
            found: list[Violation] = []
            for c in checkers:
                for rec in log:
                    found.extend(c.check(rec))
            found.extend(prism_violations(prism_records, ops, prism_spec.name))
            if a.keep:
                a.keep.mkdir(parents=True, exist_ok=True)
                (a.keep / f"{sc.name}.requests.json").write_text(json.dumps(log, indent=1))
                (a.keep / f"{sc.name}.prism.json").write_text(json.dumps(prism_records, indent=1))
                (a.keep / f"{sc.name}.prism.log").write_text("\n".join(prism_lines))
        total_exchanges += len(log)
        unexcepted = []
        for v in found:
            hit = next((e for e in exceptions if e.covers(v)), None)
            if hit:
                hit.used += 1
                excepted[hit.id] = excepted.get(hit.id, 0) + 1
            else:
                unexcepted.append(v)
        if len(prism_records) < len(log):
            failures.append(
                f"{sc.name}: Prism passed on {len(prism_records)} exchanges but the simulator saw {len(log)}"
            )
        seen = set()
        for v in unexcepted:
            key = (v.validator, v.operation, v.direction, v.status, v.field, v.message)
            if key not in seen:
                seen.add(key)
                failures.append(f"VIOLATION in {sc.name}: {v.line()}")
        print(
            f"contract: {sc.name}: {len(log)} exchanges, {len(found)} findings "
            f"({len(found) - len(unexcepted)} excepted), {time.monotonic() - t0:.1f}s",
            flush=True,
        )

    print(f"contract: {total_exchanges} exchanges in {len(scenarios)} scenarios, {time.monotonic() - started:.1f}s")
    for e in exceptions:
        print(f"contract: exception {e.id}: {e.used} findings")
    if failures:
        print("\ncontract check FAILED:", file=sys.stderr)
        for f in failures:
            print(f"  {f}", file=sys.stderr)
        return 1
    print("contract check passed: every request and response conforms, or is a reviewed exception")
    return 0


if __name__ == "__main__":
    # A SIGTERM (CI timeout, Ctrl-C in run.sh) unwinds through the `with`
    # blocks, so every child process is stopped by its pid.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main(sys.argv[1:]))
