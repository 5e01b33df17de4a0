"""Fixtures for the console's real-browser tests: real `consul-rs agent -dev` processes on free
loopback ports, seeded over HTTP, and headless Chromium (the system's, never a downloaded one)."""

import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parents[2]
MANAGEMENT_TOKEN = "7e1b0c8a-4f1e-4a53-9d1c-5b2f0e7a9c11"

# Console messages that are not JavaScript errors: the browser logs every non-2xx response and
# every refused connection this way (an empty KV folder is a 404; the unreachable-agent test stops
# the agent on purpose).
IGNORED_CONSOLE = ("Failed to load resource",)


def _binary() -> str:
    explicit = os.environ.get("CONSUL_RS_BIN")
    if explicit:
        return explicit
    candidate = REPO / "target" / "debug" / "consul-rs"
    if candidate.exists():
        return str(candidate)
    pytest.fail("consul-rs binary not found: run `cargo build --bin consul-rs` or set CONSUL_RS_BIN")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Agent:
    """One `consul-rs agent -dev` process; stop() and start() keep its ports and data dir."""

    def __init__(self, config: str | None = None, token: str | None = None):
        self.http = _free_port()
        self.ports = {p: _free_port() for p in ("server", "serf-lan", "serf-wan", "dns")}
        self.dir = tempfile.mkdtemp(prefix="consul-rs-browser-")
        self.data_dir = os.path.join(self.dir, "data")
        self.token = token
        self.config_file = None
        if config:
            self.config_file = os.path.join(self.dir, "agent.hcl")
            with open(self.config_file, "w") as f:
                f.write(config)
        self.proc = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http}"

    def ui(self, path: str = "/ui/") -> str:
        """Absolute URL of a console page served by this agent."""
        return self.base + path

    def start(self):
        args = [
            _binary(), "agent", "-dev", "-client", "127.0.0.1", "-bind=127.0.0.1",
            f"-http-port={self.http}", f"-server-port={self.ports['server']}",
            f"-serf-lan-port={self.ports['serf-lan']}", f"-serf-wan-port={self.ports['serf-wan']}",
            f"-dns-port={self.ports['dns']}",
            f"-data-dir={self.data_dir}", "-log-level", "warn",
        ]
        if self.config_file:
            args.append(f"-config-file={self.config_file}")
        self.log = open(os.path.join(self.dir, "agent.log"), "ab")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        deadline = time.time() + 60
        while True:
            try:
                if self.get("/v1/status/leader") not in ("", None):
                    break
            except (OSError, urllib.error.HTTPError, ValueError):
                pass
            if time.time() > deadline or self.proc.poll() is not None:
                self.stop()
                log = Path(self.dir, "agent.log").read_text(errors="replace")[-3000:]
                pytest.fail(f"agent did not come up:\n{log}")
            time.sleep(0.1)
        # The console needs the UI page, not only the API.
        wait_until(lambda: self.status(self.ui()) == 200, "the agent serves /ui/")
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc:
            self.log.close()
        self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def request(self, method: str, path: str, body=None, token: str | None = None):
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else (body.encode() if isinstance(body, str) else json.dumps(body).encode())
        req = urllib.request.Request(self.base + path, data=data, method=method)
        tok = token if token is not None else self.token
        if tok:
            req.add_header("X-Consul-Token", tok)
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read()
        return json.loads(raw) if raw.strip()[:1] in (b"{", b"[", b'"') or raw.strip() in (b"true", b"false") else raw.decode()

    def get(self, path, token=None):
        return self.request("GET", path, token=token)

    def put(self, path, body=None, token=None):
        return self.request("PUT", path, body if body is not None else b"", token=token)

    def status(self, url) -> int:
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            return 0

    def kv(self, key):
        entries = self.get(f"/v1/kv/{key}")
        return base64.b64decode(entries[0]["Value"] or "").decode()


def wait_until(fn, what: str, timeout: float = 30.0):
    """Polls `fn` until it returns truthy (generous: CI machines are loaded)."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            if fn():
                return
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting until {what} (last error: {last})")


def seed(agent: Agent):
    """Services with checks, KV keys, a session holding a lock, a user event."""
    agent.put("/v1/agent/service/register", {
        "Name": "web", "ID": "web-1", "Tags": ["v1", "http"], "Port": 8080, "Meta": {"team": "frontend"},
        "Check": {"CheckID": "web-ttl", "Name": "web heartbeat", "TTL": "10m", "Notes": "pushed by the app"},
    })
    agent.put("/v1/agent/service/register", {"Name": "db", "ID": "db-1", "Tags": ["primary"], "Port": 5432})
    agent.put("/v1/agent/check/pass/web-ttl?note=all%20good")
    agent.put("/v1/kv/config/app.json", '{"debug": false}')
    agent.put("/v1/kv/config/name", "hello world")
    session = agent.put("/v1/session/create", {"Name": "leader-election", "TTL": "60s"})["ID"]
    agent.put(f"/v1/kv/locks/leader?acquire={session}", "me")
    agent.put("/v1/event/fire/deploy", "version 42")
    return {"session": session}


@pytest.fixture(scope="session")
def agent():
    """A shared seeded dev agent (tests that change state use their own names)."""
    a = Agent()
    try:
        a.start()
        a.seeded = seed(a)
        yield a
    finally:
        a.cleanup()


@pytest.fixture()
def own_agent():
    """A dev agent of the test's own (for stop/restart)."""
    a = Agent()
    try:
        a.start()
        seed(a)
        yield a
    finally:
        a.cleanup()


ACL_CONFIG = f"""
acl {{
  enabled = true
  default_policy = "deny"
  tokens {{
    initial_management = "{MANAGEMENT_TOKEN}"
  }}
}}
"""


@pytest.fixture(scope="session")
def acl_agent():
    """A dev agent with ACLs on (default deny); requests from fixtures use the management token."""
    a = Agent(config=ACL_CONFIG, token=MANAGEMENT_TOKEN)
    try:
        a.start()
        seed(a)
        yield a
    finally:
        a.cleanup()


@pytest.fixture(scope="session")
def browser():
    executable = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, headless=True, args=args)
        try:
            yield b
        finally:
            b.close()


class Console:
    """A browser page plus the JavaScript errors it logged."""

    def __init__(self, context, page):
        self.context = context
        self.page = page
        self.errors = []
        page.on("console", lambda m: self.errors.append(f"console.{m.type}: {m.text}")
                if m.type == "error" and not m.text.startswith(IGNORED_CONSOLE) else None)
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))


@pytest.fixture()
def console(browser):
    """Factory of pages (1280×800, light unless asked); every page must end without JS errors."""
    opened = []

    def make(**kwargs):
        kwargs.setdefault("viewport", {"width": 1280, "height": 800})
        kwargs.setdefault("color_scheme", "light")
        context = browser.new_context(**kwargs)
        context.set_default_timeout(20000)
        c = Console(context, context.new_page())
        opened.append(c)
        return c

    yield make
    errors = [e for c in opened for e in c.errors]
    for c in opened:
        c.context.close()
    assert not errors, f"JavaScript errors in the console: {errors}"


@pytest.fixture()
def page(console):
    """One console page."""
    return console().page


SCREENSHOTS = REPO / "docs" / "screenshots"


def screenshot(page, name: str):
    """Saves docs/screenshots/<name>.png, only with UPDATE_SCREENSHOTS=1."""
    if os.environ.get("UPDATE_SCREENSHOTS") != "1":
        return
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
