"""ACL token plumbing: the token options and environment, the X-Consul-Token header on every kind
of request, the 401/403 exceptions, and the embedded Agent's ``acl`` block.

The header and error tests run against a local HTTP fixture that records what it receives; the
enforcement test runs against an embedded agent with ACLs on.
"""

from __future__ import annotations

import http.server
import json
import os
import threading
from collections.abc import Iterator

import pytest

import consul_rs


class _Fixture(http.server.ThreadingHTTPServer):
    """Answers every request with ``answer`` (status, body) and records (method, path, token)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[tuple[str, str, str | None]] = []
        self.answer: tuple[int, bytes] = (404, b"")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Fixture

    def _any(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.server.seen.append((self.command, self.path, self.headers.get("X-Consul-Token")))
        status, body = self.server.answer
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Consul-Index", "1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_DELETE = _any

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake() -> Iterator[_Fixture]:
    srv = _Fixture()
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def no_token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONSUL_HTTP_TOKEN", raising=False)
    monkeypatch.delenv("CONSUL_HTTP_TOKEN_FILE", raising=False)


def test_token_sent_on_every_request(fake: _Fixture, no_token_env: None) -> None:
    c = consul_rs.Client(fake.address, token="s3cret")
    c.kv.get("k")
    fake.answer = (200, b'""')
    c.status.leader()
    assert fake.seen and all(tok == "s3cret" for _, _, tok in fake.seen), fake.seen
    fake.seen.clear()
    fake.answer = (404, b"")
    consul_rs.Client(fake.address).kv.get("k")
    assert fake.seen[-1][2] is None


def test_token_sent_by_watches(fake: _Fixture, no_token_env: None) -> None:
    c = consul_rs.Client(fake.address, token="w")
    with c.watch.key("k") as w:
        w.next(timeout=5)
    assert any(p.startswith("/v1/kv/k") and tok == "w" for _, p, tok in fake.seen), fake.seen


def test_register_token(fake: _Fixture, no_token_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSUL_HTTP_ADDR", fake.address)
    fake.answer = (200, b"")
    with consul_rs.register("web", port=8080, token="reg-token"):
        pass
    paths = [(m, p, tok) for m, p, tok in fake.seen if p.startswith("/v1/agent/service/")]
    assert paths and all(tok == "reg-token" for _, _, tok in paths), fake.seen
    with pytest.raises(ValueError):
        consul_rs.register("web", client=consul_rs.Client(fake.address), token="x")


def test_env_and_token_file_precedence(fake: _Fixture, no_token_env: None, monkeypatch: pytest.MonkeyPatch,
                                       tmp_path: os.PathLike[str]) -> None:
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "from-env")
    consul_rs.Client(fake.address).kv.get("k")
    assert fake.seen[-1][2] == "from-env"
    f = os.path.join(tmp_path, "token")
    with open(f, "w") as fh:
        fh.write("from-file\n")
    monkeypatch.setenv("CONSUL_HTTP_TOKEN_FILE", f)
    consul_rs.Client(fake.address).kv.get("k")
    assert fake.seen[-1][2] == "from-file"
    consul_rs.Client(fake.address, token="explicit").kv.get("k")
    assert fake.seen[-1][2] == "explicit"  # an explicit option beats the environment
    consul_rs.Client(fake.address, token="explicit", token_file=f).kv.get("k")
    assert fake.seen[-1][2] == "from-file"  # as Consul: the file is used instead of the token
    with pytest.raises(consul_rs.InvalidArgumentError, match="Error loading token file"):
        consul_rs.Client(fake.address, token_file=os.path.join(tmp_path, "missing"))


def test_permission_errors(fake: _Fixture, no_token_env: None) -> None:
    c = consul_rs.Client(fake.address, token="t")
    msg = "Permission denied: token with AccessorID 'a1' lacks permission 'key:write' on \"foo\""
    fake.answer = (403, msg.encode())
    with pytest.raises(consul_rs.PermissionDeniedError) as e:
        c.kv.put("foo", b"v")
    assert msg in str(e.value) and e.value.code == "PERMISSION_DENIED" and e.value.http_status == 403
    assert not isinstance(e.value, consul_rs.ACLNotFoundError)
    assert isinstance(e.value, PermissionError)
    fake.answer = (403, b"ACL not found")
    with pytest.raises(consul_rs.ACLNotFoundError) as nf:
        c.kv.get("foo")
    assert isinstance(nf.value, consul_rs.PermissionDeniedError) and "ACL not found" in str(nf.value)
    fake.answer = (401, b"ACL support disabled")
    with pytest.raises(consul_rs.PermissionDeniedError, match="ACL support disabled"):
        c.kv.get("foo")


def test_agent_acl_block_is_validated() -> None:
    with pytest.raises(consul_rs.InvalidArgumentError, match="default_policy"):
        consul_rs.Agent(acl={"enabled": True, "default_policy": "maybe"})
    with pytest.raises(consul_rs.InvalidArgumentError, match="enabeld"):
        consul_rs.Agent(acl={"enabeld": True})
    with pytest.raises(TypeError):
        consul_rs.Agent(acl="enabled")  # type: ignore[arg-type]


def test_agent_with_acl_block_starts_and_its_clients_take_tokens() -> None:
    acl = {"enabled": True, "default_policy": "deny", "tokens": {"initial_management": "root", "agent": "root"}}
    with consul_rs.Agent(acl=acl) as agent:
        c = agent.client(token="root")
        c.kv.put("acl/probe", b"1")
        assert c.kv.get("acl/probe").value == b"1"
        assert [m.name for m in agent.members()] == [agent.node_name]


def test_enforcement_against_embedded_agent(no_token_env: None) -> None:
    acl = {"enabled": True, "default_policy": "deny", "tokens": {"initial_management": "root"}}
    with consul_rs.Agent(acl=acl) as agent:
        anon = agent.client()
        with pytest.raises(consul_rs.PermissionDeniedError, match="Permission denied"):
            anon.kv.put("foo", b"v")
        with pytest.raises(consul_rs.ACLNotFoundError):
            agent.client(token="not-a-token").kv.get("foo")
        root = agent.client(token="root")
        root.kv.put("foo", b"v")
        assert json.loads(json.dumps(root.kv.get("foo").value.decode())) == "v"
