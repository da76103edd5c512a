"""Proof that the contract check can fail: deliberately bad requests and
responses must be rejected by both validators, with the operation and field
named, and must not be covered by EXCEPTIONS.yaml.

    python selftest.py --binary target/debug/okta-phone-migrate
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import urllib.error
import urllib.request
from pathlib import Path

from check_openapi import Checker
from drive import HERE, TOKEN, load_exceptions, prism_violations, spec_dir
from harness import REPO, Stack

USER = "00u1abc0000000000001"
FACTOR = "mbl1abc0000000000001"


def record(method, path, query=None, body=None, status=200, response=None, headers=None):
    """A request-log entry as the simulator writes it with capture on."""
    req_headers = {"accept": "application/json", "authorization": "SSWS [redacted]"}
    if body is not None:
        req_headers["content-type"] = "application/json"
    req_headers.update(headers or {})
    return {
        "seq": 1,
        "method": method,
        "path": path,
        "query": query,
        "body": body,
        "status": status,
        "dropped": False,
        "exchange": {
            "requestHeaders": req_headers,
            "responseHeaders": {"content-type": "application/json"} if response is not None else {},
            "responseBody": response,
        },
    }


GOOD_FACTOR = {
    "id": FACTOR,
    "factorType": "sms",
    "provider": "OKTA",
    "status": "ACTIVE",
    "profile": {"phoneNumber": "+12135550101"},
}
ENROLL = f"/api/v1/users/{USER}/factors"
SMS_BODY = {"factorType": "sms", "provider": "OKTA", "profile": {"phoneNumber": "+12135550101"}}

# (what is wrong, record, operation, direction, field pattern that must be
# named, spec variant: "strict" or "both")
BAD = [
    (
        "enroll with an unknown factorType",
        record("POST", ENROLL, "updatePhone=true&activate=true", dict(SMS_BODY, factorType="smss"), 200, GOOD_FACTOR),
        "enrollFactor", "request", "factorType", "both",
    ),
    (
        "enroll with a number that is not E.164",
        record("POST", ENROLL, "updatePhone=true", dict(SMS_BODY, profile={"phoneNumber": "213-555-0101"}), 200, GOOD_FACTOR),
        "enrollFactor", "request", "phoneNumber", "strict",
    ),
    (
        "enroll with a non-boolean activate",
        record("POST", ENROLL, "updatePhone=true&activate=maybe", SMS_BODY, 200, GOOD_FACTOR),
        "enrollFactor", "request", "activate", "both",
    ),
    (
        "enroll with tokenLifetimeSeconds that is not a number",
        record("POST", ENROLL, "tokenLifetimeSeconds=soon", SMS_BODY, 200, GOOD_FACTOR),
        "enrollFactor", "request", "tokenLifetimeSeconds", "both",
    ),
    (
        "factor list answered with an object",
        record("GET", ENROLL, None, None, 200, {"id": FACTOR}),
        "listFactors", "response", "body", "both",
    ),
    (
        "factor with an unknown status",
        record("GET", ENROLL, None, None, 200, [dict(GOOD_FACTOR, status="ENABLED")]),
        "listFactors", "response", "status", "both",
    ),
    (
        "factor answered with a number that is not E.164",
        record("GET", ENROLL, None, None, 200, [dict(GOOD_FACTOR, profile={"phoneNumber": "2135550101"})]),
        "listFactors", "response", "phoneNumber", "strict",
    ),
    (
        "delete answered 200 where the spec says 204",
        record("DELETE", f"{ENROLL}/{FACTOR}", None, None, 200, {}),
        "unenrollFactor", "response", "status", "both",
    ),
    (
        "error body without errorCode's type",
        record("POST", ENROLL, "updatePhone=true", SMS_BODY, 400, {"errorCode": 1, "errorSummary": "x", "errorCauses": []}),
        "enrollFactor", "response", "errorCode", "both",
    ),
]


def check_openapi_core(exceptions) -> list[str]:
    import re

    problems = []
    specs = spec_dir()
    strict = Checker(specs / "tool-paths-strict.yaml")
    plain = Checker(specs / "tool-paths.yaml")
    for what, rec, op, direction, field_rx, variant in BAD:
        rec = json.loads(json.dumps(rec))
        hdrs = rec["exchange"]["requestHeaders"]
        for k in [k for k, v in hdrs.items() if v is None]:
            del hdrs[k]
        for checker in [strict] + ([plain] if variant == "both" else []):
            found = [
                v
                for v in checker.check(rec)
                if v.operation == op and v.direction == direction and re.search(field_rx, v.field + " " + v.message)
            ]
            if not found:
                problems.append(f"{checker.name} accepted: {what}")
                continue
            covered = [v for v in found if any(e.covers(v) for e in exceptions)]
            if covered:
                problems.append(f"EXCEPTIONS.yaml hides a real violation: {what}: {covered[0].line()}")
            else:
                print(f"selftest: {checker.name} rejects {what}: {found[0].line()[:160]}")
    # A good exchange must pass, or everything above proves nothing.
    good = record("POST", ENROLL, "updatePhone=true&activate=true", SMS_BODY, 200, GOOD_FACTOR)
    for checker in (strict, plain):
        bad = checker.check(good)
        if bad:
            problems.append(f"{checker.name} rejects a valid enroll: {bad[0].line()}")
    return problems


def call(url, method="GET", body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", f"SSWS {TOKEN}")
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, json.loads(raw) if raw else None


def check_prism(binary: Path, exceptions) -> list[str]:
    problems = []
    specs = spec_dir()
    org = REPO / "samples" / "org.json"
    # 1. With --errors, Prism itself refuses: 422 for a bad request (never
    #    forwarded), 500 for a bad upstream response.
    with Stack(binary, specs / "tool-paths.yaml", org, TOKEN, [], errors=True) as st:
        status, body = call(
            f"{st.url}/api/v1/users/{USER}/factors?updatePhone=maybe", "POST", dict(SMS_BODY, factorType="smss")
        )
        locs = [".".join(map(str, v.get("location", []))) for v in (body or {}).get("validation", [])]
        if status != 422 or not any("factorType" in x for x in locs) or not any("updatephone" in x.lower() for x in locs):
            problems.append(f"prism --errors let a bad enroll through: {status} {body}")
        else:
            print(f"selftest: prism --errors answers 422 to a bad enroll: {locs}")
        if any(r["method"] == "POST" for r in st.sim_log()):
            problems.append("prism --errors forwarded a request it had rejected")
        st.faults([{"match": {"op": "listFactors"}, "action": {"respond": {"status": 200, "errorCode": "E0000009", "errorSummary": "not a list"}}}])
        status, body = call(f"{st.url}/api/v1/users/{USER}/factors")
        if status != 500 or "VIOLATIONS" not in str((body or {}).get("type")):
            problems.append(f"prism --errors passed a bad response: {status} {body}")
        else:
            print(f"selftest: prism --errors answers 500 to a bad upstream response: {body.get('validation')}")
    # 2. As drive.py runs it (no --errors, verdict in sl-violations): the
    #    findings name operation and field and are not excepted.
    with Stack(binary, specs / "tool-paths.yaml", org, TOKEN, []) as st:
        ops = Checker(specs / "tool-paths.yaml").ops
        call(f"{st.url}/api/v1/users/{USER}/factors?activate=maybe", "POST", dict(SMS_BODY, factorType="smss"))
        st.faults([{"match": {"op": "listFactors"}, "action": {"respond": {"status": 200, "errorCode": "E0000009", "errorSummary": "not a list"}}}])
        call(f"{st.url}/api/v1/users/{USER}/factors")
        req = urllib.request.Request(f"{st.url}/api/v1/users/{USER}/factors/{FACTOR}")
        try:
            urllib.request.urlopen(req, timeout=30).read()
        except urllib.error.HTTPError:
            pass
        found = prism_violations(st.recorder.take(), ops, "tool-paths.yaml")
        want = [
            ("enrollFactor", "request", "factorType"),
            ("enrollFactor", "request", "activate"),
            ("listFactors", "response", "body"),
            ("getFactor", "request", ""),  # no credentials
        ]
        for op, direction, field in want:
            hits = [v for v in found if v.operation == op and v.direction == direction and field in v.field]
            if not hits:
                problems.append(f"prism (recorded) missed {op} {direction} {field}: {[v.line() for v in found]}")
            elif any(any(e.covers(v) for e in exceptions) for v in hits):
                problems.append(f"EXCEPTIONS.yaml hides a real violation: {hits[0].line()}")
            else:
                print(f"selftest: prism names {hits[0].line()[:160]}")
    return problems


def main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", type=Path, default=REPO / "target" / "debug" / "okta-phone-migrate")
    a = ap.parse_args(argv)
    exceptions = load_exceptions(HERE / "EXCEPTIONS.yaml")
    problems = check_openapi_core(exceptions) + check_prism(a.binary, exceptions)
    if problems:
        print("\ncontract selftest FAILED: the check would miss these:", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    print("contract selftest passed: bad requests and responses are rejected with operation and field named")
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main(sys.argv[1:]))
