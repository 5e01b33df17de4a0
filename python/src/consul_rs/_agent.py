"""An embedded consul-rs node: a full agent inside this Python process."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from typing import Any

from . import _native
from ._client import AsyncClient, Client, _seconds, _track
from ._types import AgentMember
from .errors import _invalid

__all__ = ["Agent"]


class Agent:
    """Starts a consul-rs node in this process and returns once it serves.

    A server by default. With no ``bootstrap_expect`` and no ``data_dir`` it is a dev node
    (in-memory, its own leader). ``bootstrap_expect=3`` plus ``retry_join=[first.serf_addr]`` on
    each of three Agents forms a cluster in one process. ``server=False`` makes a client agent,
    Consul's default kind of node: it keeps no replicated state, joins the servers through
    ``retry_join`` (or :meth:`join`), runs its own services and checks, and forwards every other
    request to a server. Ports default to free ones. Use it as a context manager, or call
    :meth:`shutdown` or :meth:`leave` (shutdown is also done at interpreter exit). An Agent
    cannot be used in a process forked after it started (:class:`ForkedError`).

    ``acl`` enables Consul's ACL system on the node with Consul's ``acl { … }`` keys, e.g.
    ``{"enabled": True, "default_policy": "deny", "tokens": {"initial_management": "root"}}``
    (also ``down_policy``, ``token_ttl``/``policy_ttl``/``role_ttl``, ``enable_key_list_policy``,
    ``enable_token_persistence``, and tokens ``agent``, ``default``, ``agent_recovery``,
    ``replication``, ``config_file_service_registration``, ``dns``). Clients of such a node
    pass ``token=``: ``agent.client(token="root")``.

    ``tls`` takes Consul's ``tls { … }`` block, e.g. ``{"defaults": {"ca_file": …, "cert_file": …,
    "key_file": …, "verify_incoming": True, "verify_outgoing": True}, "internal_rpc":
    {"verify_server_hostname": True}}`` (certificates from ``consul-rs tls cert create``), and
    ``https_port`` opens the HTTPS API (0: any free port; :attr:`https_addr` says which).
    ``http_port=-1`` turns plain HTTP off: :meth:`client` then speaks HTTPS with the node's own
    CA and certificate. ``config`` takes any other Consul config-file keys (``node_meta``,
    ``dns_config``, ``limits``, ``services``, …), read by the ``consul-rs`` binary's own parser,
    so each is honoured, accepted without effect or refused exactly as in a config file (the
    README's "Configuration keys" table); a refused or unknown key raises
    :class:`InvalidArgumentError` naming it.

    ``wait_for_leader`` (default: for a dev or single server, and for a client agent with
    ``retry_join``) waits up to ``timeout`` seconds until the node knows a leader; a client
    agent knows one once a server it reaches does.
    """

    def __init__(self, node_name: str | None = None, *, server: bool = True, dev: bool | None = None,
                 bootstrap_expect: int = 0, data_dir: str | os.PathLike[str] | None = None,
                 datacenter: str = "dc1", bind_addr: str = "127.0.0.1", http_port: int = 0,
                 serf_lan_port: int = 0, serf_wan_port: int = 0, server_port: int = 0, dns_port: int = 0,
                 retry_join: Iterable[str] = (), raft_multiplier: int = 1, wait_for_leader: bool | None = None,
                 timeout: float = 30.0, acl: Mapping[str, Any] | None = None,
                 tls: Mapping[str, Any] | None = None, https_port: int | None = None,
                 config: Mapping[str, Any] | None = None) -> None:
        acl_json = None
        config_json = _config_json(config, tls, https_port, http_port)
        if http_port == -1:
            http_port = 0  # turned off through config_json's ports.http = -1
        if acl is not None:
            # Consul's ``acl { … }`` keys: enabled, default_policy, down_policy, token_ttl, …,
            # tokens {initial_management, agent, default, …}; validated natively.
            if not isinstance(acl, Mapping):
                raise TypeError(f"acl: expected a mapping, got {type(acl).__name__}")
            acl_json = json.dumps(dict(acl))
        if node_name is None:
            node_name = f"py-{os.getpid()}-{id(self) & 0xFFFF:x}"
        if not isinstance(node_name, str):
            raise TypeError(f"node_name: expected str, got {type(node_name).__name__}")
        if not node_name:
            raise _invalid("node_name: must not be empty")
        if not isinstance(server, bool):
            raise TypeError(f"server: expected bool, got {type(server).__name__}")
        if dev is not None and not isinstance(dev, bool):
            raise TypeError(f"dev: expected bool or None, got {type(dev).__name__}")
        if isinstance(bootstrap_expect, bool) or not isinstance(bootstrap_expect, int):
            raise TypeError(f"bootstrap_expect: expected int, got {type(bootstrap_expect).__name__}")
        if bootstrap_expect < 0:
            raise _invalid(f"bootstrap_expect: {bootstrap_expect} is negative")
        for name, port in (("http_port", http_port), ("serf_lan_port", serf_lan_port),
                           ("serf_wan_port", serf_wan_port),
                           ("server_port", server_port), ("dns_port", dns_port)):
            if isinstance(port, bool) or not isinstance(port, int):
                raise TypeError(f"{name}: expected int, got {type(port).__name__}")
            if not 0 <= port <= 65535:
                raise _invalid(f"{name}: {port} is out of range 0-65535")
        if isinstance(retry_join, str):
            raise TypeError("retry_join: expected a list of addresses, got str")
        join = list(retry_join)
        for addr in join:
            if not isinstance(addr, str):
                raise TypeError(f"retry_join: expected str addresses, got {type(addr).__name__}")
            if not addr:
                raise _invalid("retry_join: addresses must not be empty")
        if not server:
            if dev:
                raise _invalid("dev: a client agent (server=False) cannot be a dev agent")
            if bootstrap_expect:
                raise _invalid("bootstrap_expect: only servers bootstrap; a client agent (server=False) joins them")
            dev = False
        if dev is None:
            dev = bootstrap_expect == 0 and data_dir is None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if not dev and data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="consul-rs-agent-")
            data_dir = self._tmp.name
        try:
            self._a = _native.NativeAgent(
                node_name, dev=dev, server=server, bootstrap_expect=bootstrap_expect,
                data_dir=None if data_dir is None else os.fspath(data_dir), datacenter=datacenter,
                bind_addr=bind_addr, http_port=http_port, serf_lan_port=serf_lan_port,
                serf_wan_port=serf_wan_port, server_port=server_port,
                dns_port=dns_port, retry_join=join, raft_multiplier=raft_multiplier, acl_json=acl_json,
                config_json=config_json)
        except BaseException:
            self._cleanup_tmp()
            raise
        self._server = server
        _track(self)
        if wait_for_leader is None:
            wait_for_leader = (dev or bootstrap_expect <= 1) if server else bool(join)
        if wait_for_leader:
            self.wait_for_leader(timeout)

    @property
    def server(self) -> bool:
        """Whether this node is a server (else a client agent)."""
        return self._server

    @property
    def http_addr(self) -> str:
        """``host:port`` of the HTTP API."""
        return self._a.http_addr

    @property
    def https_addr(self) -> str | None:
        """``host:port`` of the HTTPS API (``None`` unless ``https_port`` and certificates are set)."""
        return self._a.https_addr

    @property
    def serf_addr(self) -> str:
        """``host:port`` other agents ``retry_join``."""
        return self._a.serf_addr

    @property
    def node_name(self) -> str:
        """The node name."""
        return self._a.node_name

    @property
    def running(self) -> bool:
        """Whether the agent is running."""
        return self._a.running

    def wait_for_leader(self, timeout: float = 30.0) -> None:
        """Blocks until the agent knows a leader; :class:`ConsulTimeoutError` after ``timeout``."""
        self._a.wait_for_leader(_seconds(timeout, "timeout"))

    def client(self, **kwargs: Any) -> Client:
        """A :class:`Client` for this agent (it keeps the agent alive while referenced)."""
        c = Client(**self._client_kwargs(kwargs))
        c._agent_ref = self
        return c

    def async_client(self, **kwargs: Any) -> AsyncClient:
        """An :class:`AsyncClient` for this agent (it keeps the agent alive while referenced)."""
        c = AsyncClient(**self._client_kwargs(kwargs))
        c._agent_ref = self
        return c

    def _client_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        # Plain HTTP whatever CONSUL_HTTP_SSL says (that variable describes some other agent);
        # an HTTPS-only node is reached over HTTPS with its own CA and certificate, which
        # explicit keyword arguments override.
        address, https, ca_file, ca_path, cert, key = self._a.client_options
        kwargs.setdefault("https", https)
        if https:
            for name, value in (("ca_file", ca_file), ("ca_path", ca_path), ("client_cert", cert),
                                ("client_key", key)):
                if value is not None:
                    kwargs.setdefault(name, value)
        return {"address": address, **kwargs}

    def join(self, address: str) -> None:
        """Joins the gossip pool of the agent at ``address`` (``host`` or ``host:port`` of its
        serf_lan listener, e.g. another Agent's :attr:`serf_addr`)."""
        if not isinstance(address, str):
            raise TypeError(f"address: expected str, got {type(address).__name__}")
        if not address:
            raise _invalid("address: must not be empty")
        self._a.join(address)

    def members(self) -> list[AgentMember]:
        """The members of this node's LAN gossip pool, itself included."""
        return [AgentMember._from_native(m) for m in self._a.members()]

    def leave(self) -> None:
        """Leaves the gossip pool gracefully, so the other members list this node as ``left``
        (a client agent's node then leaves the catalog; a server leaves the Raft
        configuration), then stops the node. :class:`ShutdownError` if it already stopped."""
        try:
            self._a.leave()
        finally:
            self._cleanup_tmp()

    def shutdown(self) -> None:
        """Stops the node without leaving: the others see it fail (idempotent)."""
        self._a.shutdown()
        self._cleanup_tmp()

    def _cleanup_tmp(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def _atexit(self) -> None:
        self.shutdown()

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()


def _config_json(config: Mapping[str, Any] | None, tls: Mapping[str, Any] | None, https_port: int | None,
                 http_port: int) -> str | None:
    """The config-file keys an Agent passes natively: ``config`` plus ``tls`` and the ports."""
    merged: dict[str, Any] = {}
    for name, value in (("config", config), ("tls", tls)):
        if value is not None and not isinstance(value, Mapping):
            raise TypeError(f"{name}: expected a mapping, got {type(value).__name__}")
    if config is not None:
        merged.update(config)
    if tls is not None:
        merged["tls"] = dict(tls)
    ports: dict[str, Any] = {}
    if https_port is not None:
        if isinstance(https_port, bool) or not isinstance(https_port, int):
            raise TypeError(f"https_port: expected int, got {type(https_port).__name__}")
        if not 0 <= https_port <= 65535:
            raise _invalid(f"https_port: {https_port} is out of range 0-65535")
        ports["https"] = https_port
    if http_port == -1:
        ports["http"] = -1
    if ports:
        given = merged.get("ports", {})
        if not isinstance(given, Mapping):
            raise TypeError(f"config['ports']: expected a mapping, got {type(given).__name__}")
        merged["ports"] = {**given, **ports}
    return json.dumps(merged) if merged else None
