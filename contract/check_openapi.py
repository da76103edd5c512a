"""Validates recorded request/response pairs against Okta's management spec
with openapi-core.

The records are the simulator's request log with capture on
(`POST /__sim/settings {"capture": true}`), so both sides are checked: what
the tool sent, and what the simulator answered. Every violation names the
operation, the direction (request or response), the field and the message.

Used by drive.py (the CI check) and selftest.py (proof that it rejects).
"""

from __future__ import annotations

import json
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

import yaml
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

# openapi-core does not implement the spec's oauth2 scheme and warns on
# every request; Prism checks the credentials instead (selftest.py).
warnings.filterwarnings("ignore", message="Unsupported scheme type")

# The spec's server is `https://{yourOktaDomain}`; requests are checked as
# if they had been sent there.
HOST_URL = "https://subdomain.okta.com"


@dataclass(frozen=True)
class Violation:
    validator: str
    operation: str
    method: str
    path: str
    direction: str  # "request" or "response"
    status: int
    field: str
    message: str

    def line(self) -> str:
        where = f"{self.direction}"
        if self.direction == "response":
            where += f" {self.status}"
        return (
            f"[{self.validator}] {self.operation} ({self.method} {self.path}) "
            f"{where}: {self.field}: {self.message}"
        )


class Operations:
    """Maps a concrete method and path to the spec's operationId and path
    template, so a violation can be named even when no validator matched."""

    def __init__(self, spec: dict):
        self.ops = []
        for template, item in spec.get("paths", {}).items():
            pattern = "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "/?$"
            for method, op in item.items():
                if method in ("get", "post", "put", "delete", "patch"):
                    # Literal segments win over parameters (…/factors/catalog
                    # over …/factors/{factorId}).
                    weight = template.count("{")
                    self.ops.append((weight, re.compile(pattern), method.upper(), template, op.get("operationId", "?")))
        self.ops.sort(key=lambda o: o[0])

    def find(self, method: str, path: str) -> tuple[str, str]:
        for _, rx, m, template, op_id in self.ops:
            if m == method and rx.match(path):
                return op_id, template
        for _, rx, _, template, _ in self.ops:
            if rx.match(path):
                return f"(no {method} operation)", template
        return "(unknown path)", path


def _field_of(err: BaseException) -> tuple[str, str]:
    """The field and message of one openapi-core error, following its cause
    chain to the schema errors that say which field is wrong."""
    name = getattr(err, "name", None)
    location = getattr(err, "location", None)
    prefix = ""
    if name:
        prefix = f"{location}.{name}" if location else str(name)
    cause = err
    seen = 0
    while cause is not None and seen < 6:
        schema_errors = getattr(cause, "schema_errors", None)
        if schema_errors:
            parts = []
            for se in schema_errors:
                path = ".".join(str(p) for p in se.absolute_path)
                field = ".".join(x for x in (prefix or _default_prefix(err), path) if x)
                parts.append((field or "(body)", se.message))
            return parts[0][0], "; ".join(f"{f}: {m}" if i else m for i, (f, m) in enumerate(parts))
        cause = cause.__cause__ or cause.__context__
        seen += 1
    return prefix or _default_prefix(err) or type(err).__name__, str(err)


def _default_prefix(err: BaseException) -> str:
    kind = type(err).__name__
    if "Body" in kind or "Data" in kind:
        return "body"
    if "Security" in kind:
        return "security"
    if "Header" in kind:
        return "header"
    if "Status" in kind or "ResponseNotFound" in kind:
        return "status"
    return ""


class Checker:
    def __init__(self, spec_path: Path):
        self.spec_path = spec_path
        raw = yaml.safe_load(spec_path.read_text())
        self.ops = Operations(raw)
        self.api = OpenAPI.from_file_path(str(spec_path))
        self.name = f"openapi-core:{spec_path.name}"

    def check(self, rec: dict) -> list[Violation]:
        """Violations of one logged exchange (request and response)."""
        ex = rec.get("exchange")
        if ex is None:
            raise ValueError(f"request #{rec.get('seq')} has no captured exchange (capture off?)")
        method = rec["method"].upper()
        path = rec["path"]
        op, template = self.ops.find(method, path)
        status = int(rec["status"])
        out: list[Violation] = []

        def add(direction: str, field: str, message: str) -> None:
            out.append(Violation(self.name, op, method, template, direction, status, field, message))

        req_headers = dict(ex.get("requestHeaders") or {})
        body = rec.get("body")
        data = None if body is None else (body if isinstance(body, str) else json.dumps(body)).encode()
        content_type = req_headers.get("content-type", "application/json")
        args = parse_qsl(rec.get("query") or "", keep_blank_values=True)
        request = MockRequest(
            HOST_URL,
            method.lower(),
            path,
            args=_multidict(args),
            headers=req_headers,
            data=data,
            content_type=content_type,
        )
        for err in self.api.iter_request_errors(request):
            field, message = _field_of(err)
            add("request", field, message)

        if rec.get("dropped") or status == 0:
            return out  # no answer was sent: nothing to check
        resp_headers = dict(ex.get("responseHeaders") or {})
        rbody = ex.get("responseBody")
        rdata = b"" if rbody is None else json.dumps(rbody).encode()
        response = MockResponse(
            rdata,
            status_code=status,
            headers=resp_headers,
            content_type=resp_headers.get("content-type", "application/json") if rbody is not None else "",
        )
        for err in self.api.iter_response_errors(request, response):
            field, message = _field_of(err)
            add("response", field, message)
        return out


def _multidict(pairs):
    from werkzeug.datastructures import ImmutableMultiDict

    return ImmutableMultiDict(pairs)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: check_openapi.py SPEC.yaml REQUEST_LOG.json", file=sys.stderr)
        return 2
    checker = Checker(Path(argv[1]))
    records = json.loads(Path(argv[2]).read_text())
    found = [v for r in records for v in checker.check(r)]
    for v in found:
        print(v.line())
    print(f"{len(records)} exchanges, {len(found)} violations")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
