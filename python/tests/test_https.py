"""HTTPS: a `consul-rs agent -dev` serving HTTPS only, with `verify_incoming`, its certificates
made by `consul-rs tls ca create` / `tls cert create`; the client's TLS options (CA file or
directory, client certificate, server name), and clear errors for an untrusted CA, a missing
client certificate and unusable files."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

import consul_rs
from conftest import binary, free_port


def _tls(directory: Path, *args: str) -> None:
    subprocess.run([binary(), "tls", *args], cwd=directory, check=True, capture_output=True)


@pytest.fixture(scope="module")
def https_agent(tmp_path_factory):
    """`(address, directory)` of an HTTPS-only agent; the directory holds its CA and a CLI
    certificate (`dc1-cli-consul-0.pem`), `cas/` a copy of the CA, and `other/` a second, unrelated CA."""
    d = tmp_path_factory.mktemp("https")
    _tls(d, "ca", "create")
    _tls(d, "cert", "create", "-server")
    _tls(d, "cert", "create", "-cli")
    (d / "other").mkdir()
    _tls(d / "other", "ca", "create")
    (d / "cas").mkdir()
    (d / "cas" / "consul-agent-ca.pem").write_bytes((d / "consul-agent-ca.pem").read_bytes())
    port = free_port()
    (d / "agent.json").write_text(
        '{"ports": {"http": -1, "https": %d}, "tls": {"defaults": {"ca_file": "consul-agent-ca.pem", '
        '"cert_file": "dc1-server-consul-0.pem", "key_file": "dc1-server-consul-0-key.pem", '
        '"verify_incoming": true}}}' % port)
    proc = subprocess.Popen(
        [binary(), "agent", "-dev", "-client", "127.0.0.1", "-bind=127.0.0.1", f"-server-port={free_port()}",
         f"-serf-lan-port={free_port()}", f"-dns-port={free_port()}", "-log-level", "warn",
         f"-config-file={d / 'agent.json'}"],
        cwd=d, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
    )
    address = f"https://127.0.0.1:{port}"
    try:
        c = consul_rs.Client(address, ca_file=d / "consul-agent-ca.pem", client_cert=d / "dc1-cli-consul-0.pem",
                             client_key=d / "dc1-cli-consul-0-key.pem", timeout=2.0)
        deadline = time.time() + 30
        while True:
            try:
                if c.status.leader():
                    break
            except consul_rs.ConsulError:
                pass
            if time.time() > deadline or proc.poll() is not None:
                pytest.fail("HTTPS-only consul-rs agent did not come up")
            time.sleep(0.1)
        yield address, d
    finally:
        proc.kill()
        proc.wait()


def test_https_with_ca_and_client_certificate(https_agent):
    address, d = https_agent
    c = consul_rs.Client(address, ca_file=d / "consul-agent-ca.pem", client_cert=d / "dc1-cli-consul-0.pem",
                         client_key=str(d / "dc1-cli-consul-0-key.pem"))
    assert c.address == address
    assert c.kv.put("https/a", b"over tls")
    assert c.kv.get("https/a").value == b"over tls"
    # A bare host:port with https=True, the CA as a directory, and the server name checked
    # instead of the address (the agent's certificate names server.dc1.consul).
    bare = consul_rs.Client(address.removeprefix("https://"), https=True, ca_path=d / "cas",
                            client_cert=d / "dc1-cli-consul-0.pem", client_key=d / "dc1-cli-consul-0-key.pem",
                            tls_server_name="server.dc1.consul")
    assert bare.address == address
    assert bare.kv.get("https/a").value == b"over tls"
    # Every file of a CA directory must hold a certificate (this one has keys too).
    with pytest.raises(consul_rs.InvalidArgumentError, match="Error loading CA Path: Couldn't parse PEM in: "):
        consul_rs.Client(address, ca_path=d)
    with pytest.raises(consul_rs.ConsulConnectionError, match="not valid for name"):
        consul_rs.Client(address, ca_file=d / "consul-agent-ca.pem", client_cert=d / "dc1-cli-consul-0.pem",
                         client_key=d / "dc1-cli-consul-0-key.pem", tls_server_name="other.dc1.consul").kv.get("x")
    # Verification off: no CA needed (the client certificate still is).
    skip = consul_rs.Client(address, insecure_skip_verify=True, client_cert=d / "dc1-cli-consul-0.pem",
                            client_key=d / "dc1-cli-consul-0-key.pem")
    assert skip.kv.get("https/a").value == b"over tls"


async def test_async_client_over_https(https_agent):
    address, d = https_agent
    async with consul_rs.AsyncClient(address, ca_file=d / "consul-agent-ca.pem",
                                     client_cert=d / "dc1-cli-consul-0.pem",
                                     client_key=d / "dc1-cli-consul-0-key.pem") as c:
        assert await c.kv.put("https/async", b"1")
        assert (await c.kv.get("https/async")).value == b"1"


def test_https_untrusted_ca_and_missing_client_certificate_are_clear_errors(https_agent):
    address, d = https_agent
    foreign = consul_rs.Client(address, ca_file=d / "other/consul-agent-ca.pem",
                               client_cert=d / "dc1-cli-consul-0.pem", client_key=d / "dc1-cli-consul-0-key.pem")
    with pytest.raises(consul_rs.ConsulConnectionError, match="certificate signed by unknown authority") as e:
        foreign.kv.get("https/a")
    assert address in str(e.value)
    anonymous = consul_rs.Client(address, ca_file=d / "consul-agent-ca.pem")
    with pytest.raises(consul_rs.ConsulConnectionError, match="client certificate"):
        anonymous.kv.get("https/a")
    missing = d / "missing.pem"
    with pytest.raises(consul_rs.InvalidArgumentError, match=f"Error loading CA File: open {missing}: no such file"):
        consul_rs.Client(address, ca_file=missing)
    with pytest.raises(consul_rs.InvalidArgumentError, match="both client cert and client key must be provided"):
        consul_rs.Client(address, client_cert=d / "dc1-cli-consul-0.pem")
    with pytest.raises(TypeError, match="insecure_skip_verify"):
        consul_rs.Client(address, insecure_skip_verify="yes")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, a server certificate and a CLI certificate made by `consul-rs tls`."""
    d = tmp_path_factory.mktemp("pki")
    _tls(d, "ca", "create")
    _tls(d, "cert", "create", "-server")
    _tls(d, "cert", "create", "-cli")
    return d


def _server_tls(d: Path, **extra: object) -> dict:
    return {"defaults": {"ca_file": str(d / "consul-agent-ca.pem"), "cert_file": str(d / "dc1-server-consul-0.pem"),
                         "key_file": str(d / "dc1-server-consul-0-key.pem"), **extra}}


def test_embedded_agent_https_only_with_verify_incoming(pki):
    """`Agent(tls=…, https_port=0, http_port=-1)`: an HTTPS-only node inside this process; its own
    client speaks HTTPS with the node's CA and certificate, and a client without a certificate
    is refused."""
    with consul_rs.Agent(tls=_server_tls(pki, verify_incoming=True), https_port=0, http_port=-1) as a:
        assert a.https_addr is not None and a.https_addr == a.http_addr
        c = a.client()
        assert c.address == f"https://{a.https_addr}"
        assert c.kv.put("embedded/tls", b"yes")
        assert c.kv.get("embedded/tls").value == b"yes"
        anonymous = consul_rs.Client(f"https://{a.https_addr}", ca_file=pki / "consul-agent-ca.pem", timeout=2.0)
        with pytest.raises(consul_rs.ConsulError):
            anonymous.kv.get("embedded/tls")
        cli = consul_rs.Client(f"https://{a.https_addr}", ca_file=pki / "consul-agent-ca.pem",
                               client_cert=pki / "dc1-cli-consul-0.pem", client_key=pki / "dc1-cli-consul-0-key.pem")
        assert cli.kv.get("embedded/tls").value == b"yes"


def test_embedded_agent_serves_http_and_https_side_by_side(pki):
    with consul_rs.Agent(tls=_server_tls(pki), https_port=0) as a:
        assert a.https_addr is not None and a.https_addr != a.http_addr
        assert a.client().address == f"http://{a.http_addr}"
        assert a.client().kv.put("both", b"1")
        tls_client = consul_rs.Client(f"https://{a.https_addr}", ca_file=pki / "consul-agent-ca.pem")
        assert tls_client.kv.get("both").value == b"1"


def test_embedded_agent_config_keys_go_through_the_binarys_parser(pki):
    # Honoured keys work; refused and unknown keys raise InvalidArgumentError naming the key,
    # before anything starts.
    with consul_rs.Agent(config={"node_meta": {"rack": "r1"}, "limits": {"kv_max_value_size": 4}}) as a:
        with pytest.raises(consul_rs.ConsulError, match="too large|413|kv_max_value_size|exceeds"):
            a.client().kv.put("big", b"0123456789")
    with pytest.raises(consul_rs.InvalidArgumentError, match="auto_encrypt.tls"):
        consul_rs.Agent(config={"auto_encrypt": {"tls": True}})
    with pytest.raises(consul_rs.InvalidArgumentError, match="tls.defualts"):
        consul_rs.Agent(tls={"defualts": {}})
    with pytest.raises(consul_rs.InvalidArgumentError, match="cert_file|key_file|certificate|No such file"):
        consul_rs.Agent(tls={"defaults": {"cert_file": str(pki / "missing.pem"), "key_file": str(pki / "missing.pem")}},
                        https_port=0)
    with pytest.raises(TypeError, match="tls: expected a mapping"):
        consul_rs.Agent(tls=["x"])  # type: ignore[arg-type]
