"""Processes and plumbing for the contract check: the simulator, Stoplight
Prism as a validating proxy in front of it, and a small recorder in front of
Prism that keeps Prism's verdict (`sl-violations`) for every exchange.

    tool ──► recorder ──► Prism proxy ──► simulator (capture on)
              │              │                 │
              │              └ validates both directions against tool-paths.yaml
              └ keeps each exchange's sl-violations    └ request log with bodies,
                                                         checked by openapi-core

Everything binds 127.0.0.1 port 0. Every process started here is stopped by
its pid when the `with` block ends, whatever happened.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import signal
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PRISM = HERE / "node_modules" / ".bin" / "prism"
START_TIMEOUT = 60.0


class Proc:
    """A child process whose output lines are collected by a thread."""

    def __init__(self, args: list[str], cwd: Path | None = None, env: dict | None = None):
        self.args = args
        self.lines: "queue.Queue[str]" = queue.Queue()
        self.all_lines: list[str] = []
        self.p = subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.t = threading.Thread(target=self._pump, daemon=True)
        self.t.start()

    def _pump(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            self.all_lines.append(line.rstrip("\n"))
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, predicate, timeout: float = START_TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.p.poll() is not None:
                    break
                continue
            hit = predicate(line)
            if hit:
                return hit
        tail = "\n".join(self.all_lines[-20:])
        raise RuntimeError(f"{self.args[0]} did not start in time:\n{tail}")

    def stop(self) -> None:
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait(timeout=10)
        self.t.join(timeout=5)


def http_json(method: str, url: str, body=None, timeout: float = 30.0):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        raw = r.read()
    return json.loads(raw) if raw else None


class Recorder:
    """A pass-through HTTP/1.1 proxy that keeps, for every exchange, the
    method, path, status and Prism's `sl-violations` header."""

    def __init__(self, upstream_host: str, upstream_port: int):
        self.records: list[dict] = []
        self.lock = threading.Lock()
        recorder = self
        local = threading.local()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _conn(self) -> http.client.HTTPConnection:
                c = getattr(local, "conn", None)
                if c is None:
                    c = http.client.HTTPConnection(upstream_host, upstream_port, timeout=60)
                    local.conn = c
                return c

            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                for attempt in (1, 2):
                    conn = self._conn()
                    try:
                        conn.request(self.command, self.path, body=body, headers=headers)
                        resp = conn.getresponse()
                        payload = resp.read()
                        break
                    except (http.client.HTTPException, OSError):
                        conn.close()
                        local.conn = None
                        if attempt == 2:
                            # Upstream closed without answering (a dropped-
                            # connection fault): do the same to the client.
                            with recorder.lock:
                                recorder.records.append(
                                    {"method": self.command, "path": self.path, "status": 0, "violations": []}
                                )
                            self.close_connection = True
                            return
                violations = []
                raw = resp.getheader("sl-violations")
                if raw:
                    try:
                        violations = json.loads(raw)
                    except ValueError:
                        violations = [{"location": ["?"], "severity": "Error", "message": raw}]
                with recorder.lock:
                    recorder.records.append(
                        {
                            "method": self.command,
                            "path": self.path,
                            "status": resp.status,
                            "violations": violations,
                        }
                    )
                self.send_response_only(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() in ("transfer-encoding", "connection", "content-length", "keep-alive"):
                        continue
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = do_PUT = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def take(self) -> list[dict]:
        with self.lock:
            out, self.records = self.records, []
        return out

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Stack:
    """Simulator + Prism + recorder for one scenario."""

    def __init__(self, binary: Path, spec: Path, org: Path, token: str, sim_args: list[str], errors: bool = False):
        self.binary = binary
        self.spec = spec
        self.org = org
        self.token = token
        self.sim_args = sim_args
        self.errors = errors
        self.procs: list[Proc] = []
        self.recorder: Recorder | None = None

    def __enter__(self) -> "Stack":
        try:
            sim = Proc(
                [str(self.binary), "simulator", "--port", "0", "--org", str(self.org), "--token", self.token, *self.sim_args],
                cwd=REPO,
            )
            self.procs.append(sim)
            self.sim_url = sim.wait_for(lambda l: l if l.startswith("http://127.0.0.1:") else None)
            http_json("POST", self.sim_url + "/__sim/settings", {"capture": True})
            env = dict(os.environ, SCARF_ANALYTICS="false", DO_NOT_TRACK="1", NO_COLOR="1", FORCE_COLOR="0")
            args = [str(PRISM), "proxy", str(self.spec), self.sim_url, "--host", "127.0.0.1", "--port", "0"]
            if self.errors:
                args.append("--errors")
            prism = Proc(args, cwd=HERE, env=env)
            self.procs.append(prism)

            def listening(line: str):
                marker = "Prism is listening on "
                return line.split(marker, 1)[1].strip() if marker in line else None

            self.prism_url = prism.wait_for(listening)
            host, port = self.prism_url.removeprefix("http://").rsplit(":", 1)
            self.recorder = Recorder(host, int(port))
            self.url = self.recorder.url
            return self
        except BaseException:
            self.__exit__(None, None, None)
            raise

    def faults(self, rules: list[dict]) -> None:
        http_json("DELETE", self.sim_url + "/__sim/faults")
        if rules:
            http_json("POST", self.sim_url + "/__sim/faults", rules)

    def sim_log(self) -> list[dict]:
        return http_json("GET", self.sim_url + "/__sim/requests")

    def prism_log(self) -> list[str]:
        return self.procs[1].all_lines if len(self.procs) > 1 else []

    def __exit__(self, *exc) -> None:
        if self.recorder is not None:
            self.recorder.stop()
        for p in reversed(self.procs):
            p.stop()
