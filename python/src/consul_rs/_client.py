"""Client, AsyncClient and the helpers built on them (watches, discovery, locks, leader
election, self-registration). One implementation serves both: each call goes to the native
layer blocking (GIL released, Ctrl-C honoured) or as an awaitable."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from . import _native
from ._types import (
    AgentMember, Check, HealthCheck, KVPair, Locality, Node, Service, ServiceEntry, UserEvent, WatchEvent, parse_duration,
)
from .errors import ConsulError, ConsulTimeoutError, NotFoundError, ShutdownError, _invalid

__all__ = [
    "Client", "AsyncClient", "Watch", "Subscription", "Discovery", "Lock", "LeaderElection",
    "Registration", "register",
]

# Everything that owns background work, closed by the atexit hook so the interpreter never
# waits on (or is touched by) native threads while finalising.
_live: weakref.WeakSet[Any] = weakref.WeakSet()
_live_lock = threading.Lock()


# Registrations stay alive until closed even when the caller drops them, as
# `consul_rs.register(...)` without keeping the result is the common use: the atexit hook
# still finds them (the set above is weak) and deregisters.
_pinned: set[Any] = set()


def _track(obj: Any) -> None:
    obj._owner_pid = os.getpid()
    with _live_lock:
        _live.add(obj)


@atexit.register
def _close_all() -> None:
    with _live_lock:
        items = list(_live)
    for obj in items:
        if getattr(obj, "_owner_pid", None) != os.getpid():
            continue  # a forked child must not deregister or release what its parent holds
        try:
            obj._atexit()
        except BaseException:  # noqa: BLE001 - nothing may stop interpreter exit
            pass


def _str(value: Any, name: str, *, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected str, got {type(value).__name__}")
    if not empty and not value:
        raise _invalid(f"{name}: must not be empty")
    return value


def _bytes(value: Any, name: str) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{name}: expected bytes or str, got {type(value).__name__}")


def _opt_str(value: Any, name: str) -> str | None:
    return None if value is None else _str(value, name)


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected bool, got {type(value).__name__}")
    return value


def _opt_int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected int, got {type(value).__name__}")
    if value < 0:
        raise _invalid(f"{name}: must not be negative")
    return value


def _seconds(value: Any, name: str) -> float:
    """A wait in seconds: a number (TypeError otherwise), finite and not negative."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected seconds, got {type(value).__name__}")
    if not 0 <= value < float("inf"):
        raise _invalid(f"{name}: must be a finite, non-negative number of seconds")
    return float(value)


def _consistency(consistent: bool, stale: bool) -> str:
    if consistent and stale:
        raise _invalid("consistent/stale: only one may be given")
    return "consistent" if consistent else "stale" if stale else ""


def _watch_value(kind: str, payload: Any) -> Any:
    if kind == "key":
        return KVPair._from_native(payload)
    if kind == "key_prefix":
        return [KVPair(*t) for t in payload]
    if kind == "events":
        return [UserEvent._from_native(t) for t in payload]
    data = json.loads(payload)
    if kind == "service":
        return [ServiceEntry._from_json(e) for e in data]
    if kind == "checks":
        return [HealthCheck._from_json(c) for c in data]
    if kind == "nodes":
        return [Node._from_json(n) for n in data]
    return data


class _Base:
    """What Client and AsyncClient share: the native client and the sync/async switch."""

    _async = False

    def __init__(self, address: str | None = None, *, token: str | None = None,
                 datacenter: str | None = None, timeout: float = 10.0,
                 token_file: str | os.PathLike[str] | None = None,
                 ca_file: str | os.PathLike[str] | None = None,
                 ca_path: str | os.PathLike[str] | None = None,
                 client_cert: str | os.PathLike[str] | None = None,
                 client_key: str | os.PathLike[str] | None = None,
                 tls_server_name: str | None = None,
                 insecure_skip_verify: bool = False,
                 https: bool | None = None) -> None:
        # The ACL token: ``token_file`` beats ``token``, which beats ``CONSUL_HTTP_TOKEN_FILE``,
        # which beats ``CONSUL_HTTP_TOKEN`` (resolved natively, as in every binding). The TLS
        # options fall back to CONSUL_CACERT, CONSUL_CAPATH, CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY,
        # CONSUL_TLS_SERVER_NAME and CONSUL_HTTP_SSL_VERIFY the same way, ``https`` (whether a
        # bare host:port is HTTPS) to CONSUL_HTTP_SSL.
        if address is not None:
            _str(address, "address")
        if token is not None:
            _str(token, "token", empty=True)
        if token_file is not None:
            token_file = os.fspath(token_file)
            _str(token_file, "token_file")
        files: dict[str, str | None] = {}
        for name, value in (("ca_file", ca_file), ("ca_path", ca_path), ("client_cert", client_cert),
                            ("client_key", client_key)):
            if value is not None:
                value = os.fspath(value)
                _str(value, name)
            files[name] = value
        if tls_server_name is not None:
            _str(tls_server_name, "tls_server_name")
        if not isinstance(insecure_skip_verify, bool):
            raise TypeError(f"insecure_skip_verify: expected bool, got {type(insecure_skip_verify).__name__}")
        if https is not None and not isinstance(https, bool):
            raise TypeError(f"https: expected bool or None, got {type(https).__name__}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TypeError(f"timeout: expected seconds, got {type(timeout).__name__}")
        if timeout <= 0:
            raise _invalid("timeout: must be positive")
        self._args = (address, token, datacenter, float(timeout), token_file, files["ca_file"], files["ca_path"],
                      files["client_cert"], files["client_key"], tls_server_name, insecure_skip_verify, https)
        self._native_client = _native.NativeClient(*self._args)
        self._pid = os.getpid()
        self._closed = False
        self._agent_ref: Any = None  # the embedded Agent this client belongs to, kept alive
        self.kv = _KV(self)
        self.status = _Status(self)
        self.catalog = _Catalog(self)
        self.health = _Health(self)
        self.agent = _AgentAPI(self)
        self.session = _Session(self)
        self.event = _Event(self)
        self.watch = _Watches(self)

    @property
    def _n(self) -> _native.NativeClient:
        if self._closed:
            raise ShutdownError("the client is closed", "SHUTDOWN")
        if os.getpid() != self._pid:
            # Forked child: the parent's pooled connections belong to the parent's runtime.
            self._native_client = _native.NativeClient(*self._args)
            self._pid = os.getpid()
        return self._native_client

    @property
    def address(self) -> str:
        """The agent's base URL."""
        return self._native_client.address

    def _call(self, fn: Callable[..., Any], post: Callable[[Any], Any] | None, *args: Any, **kw: Any) -> Any:
        if self._async:
            # The request starts when awaited, on the awaiting task's event loop.
            async def finish() -> Any:
                out = await fn(*args, is_async=True, **kw)
                return post(out) if post else out

            return finish()
        out = fn(*args, is_async=False, **kw)
        return post(out) if post else out

    def txn(self, ops: list[dict[str, Any]]) -> Any:
        """Runs a transaction (``/v1/txn``, Consul's operation list); returns the decoded answer.
        A rolled-back transaction raises :class:`ConflictError`."""
        if not isinstance(ops, list):
            raise TypeError(f"ops: expected a list of operations, got {type(ops).__name__}")
        return self._call(self._n.txn, json.loads, json.dumps(ops))

    def discover(self, service: str, *, tag: str | None = None) -> Discovery:
        """A live, locally answered set of ``service``'s passing instances."""
        _str(service, "service")
        return Discovery(self._n.discover(service, tag), self._async)

    def lock(self, key: str, *, value: bytes | str = b"", ttl: float | str = 15.0,
             lock_delay: float | str | None = None, wait: float | str | None = None) -> Lock:
        """A lock on ``key`` (Consul's session lock recipe); acquired by ``with``/``async with``
        or :meth:`Lock.acquire`."""
        _str(key, "key")
        return Lock(self, key, _bytes(value, "value"), parse_duration(ttl, "ttl"),
                    None if lock_delay is None else parse_duration(lock_delay, "lock_delay"),
                    None if wait is None else parse_duration(wait, "wait"))

    def leader_election(self, key: str, *, value: bytes | str = b"", ttl: float | str = 15.0,
                        on_elected: Callable[[], None] | None = None,
                        on_lost: Callable[[], None] | None = None) -> LeaderElection:
        """Campaigns for leadership on ``key`` from a background thread until resigned."""
        _str(key, "key")
        return LeaderElection(self, key, _bytes(value, "value"), parse_duration(ttl, "ttl"), on_elected, on_lost)

    def register(self, name: str, *, port: int | None = None, address: str | None = None,
                 tags: Iterable[str] = (), meta: Mapping[str, str] | None = None,
                 check: Check | Iterable[Check] | None = None, id: str | None = None) -> Any:
        """Registers a service with this agent and keeps its TTL checks passing until closed."""
        args = _registration_args(name, port, address, tags, meta, check, id)
        return self._call(self._n.register, lambda r: Registration(r, self._async), *args)

    def close(self) -> None:
        """Closes the client (idempotent). Watches and discoveries made from it keep running
        until closed themselves."""
        self._closed = True


def _registration_args(name: Any, port: Any, address: Any, tags: Any, meta: Any, check: Any,
                       id: Any) -> tuple[Any, ...]:
    # Emptiness and every value rule are the native SDK's (shared with Node and C).
    _str(name, "name", empty=True)
    if port is not None:
        if isinstance(port, bool) or not isinstance(port, int):
            raise TypeError(f"port: expected int, got {type(port).__name__}")
        if not 0 <= port <= 65535:
            raise _invalid(f"port: {port} is out of range 0-65535")
    if address is not None:
        _str(address, "address")
    if id is not None:
        _str(id, "id")
    if isinstance(tags, str):
        raise TypeError("tags: expected an iterable of str, got str")
    tag_list = [_str(t, "tags", empty=True) for t in tags]
    meta_map = dict(meta or {})
    for k, v in meta_map.items():
        _str(k, "meta")
        _str(v, "meta", empty=True)
    if check is None:
        checks: list[Check] = []
    elif isinstance(check, Check):
        checks = [check]
    else:
        checks = list(check)
    for c in checks:
        if not isinstance(c, Check):
            raise TypeError(f"check: expected consul_rs.Check, got {type(c).__name__}")
    return (name, id, address, port, tag_list, meta_map, [c._native() for c in checks])


class Client(_Base):
    """A blocking client for a Consul-compatible agent (``CONSUL_HTTP_ADDR`` or
    ``127.0.0.1:8500`` by default). Every wait releases the GIL and honours Ctrl-C."""

    _async = False

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class AsyncClient(_Base):
    """The asyncio client: the same surface as :class:`Client`, every call awaitable.
    Cancelling the awaiting task cancels the request."""

    _async = True

    async def aclose(self) -> None:
        """Closes the client."""
        self.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()


class _Area:
    def __init__(self, client: _Base) -> None:
        self._c = client


class _KV(_Area):
    """``/v1/kv``: bytes values, ``None`` for missing keys."""

    def get(self, key: str, *, consistent: bool = False, stale: bool = False) -> Any:
        """The pair at ``key`` or ``None``."""
        _str(key, "key")
        return self._c._call(self._c._n.kv_get, lambda r: KVPair._from_native(r[1]), key,
                             _consistency(consistent, stale))

    def list(self, prefix: str = "", *, consistent: bool = False, stale: bool = False) -> Any:
        """Every pair under ``prefix``."""
        _str(prefix, "prefix", empty=True)
        return self._c._call(self._c._n.kv_list, lambda r: [KVPair(*t) for t in r[1]], prefix,
                             _consistency(consistent, stale))

    def keys(self, prefix: str = "", *, separator: str | None = None, consistent: bool = False,
             stale: bool = False) -> Any:
        """Key names under ``prefix``, folded at ``separator``."""
        _str(prefix, "prefix", empty=True)
        return self._c._call(self._c._n.kv_keys, None, prefix, separator, _consistency(consistent, stale))

    def put(self, key: str, value: bytes | str, *, cas: int | None = None, flags: int | None = None,
            acquire: str | None = None, release: str | None = None) -> Any:
        """Writes ``key``; ``False`` when the ``cas`` index or the lock condition did not hold."""
        _str(key, "key")
        return self._c._call(self._c._n.kv_put, None, key, _bytes(value, "value"), _opt_int(cas, "cas"),
                             _opt_int(flags, "flags"), acquire, release)

    def delete(self, key: str, *, recurse: bool = False, cas: int | None = None) -> Any:
        """Deletes ``key`` (or every key under it with ``recurse``); ``False`` when ``cas`` failed."""
        _str(key, "key", empty=recurse)
        return self._c._call(self._c._n.kv_delete, None, key, bool(recurse), _opt_int(cas, "cas"))


class _Status(_Area):
    """``/v1/status``."""

    def leader(self) -> Any:
        """The leader's server address (``""`` when there is none)."""
        return self._c._call(self._c._n.status_leader, None)

    def peers(self) -> Any:
        """The voting servers' addresses."""
        return self._c._call(self._c._n.status_peers, None)


class _Catalog(_Area):
    """``/v1/catalog``."""

    def services(self, *, consistent: bool = False, stale: bool = False) -> Any:
        """``{service name: [tags]}``."""
        return self._c._call(self._c._n.catalog_services, json.loads, _consistency(consistent, stale))

    def nodes(self, *, consistent: bool = False, stale: bool = False) -> Any:
        """Every node."""
        return self._c._call(self._c._n.catalog_nodes, lambda s: [Node._from_json(n) for n in json.loads(s)],
                             _consistency(consistent, stale))

    def register(self, registration: Mapping[str, Any]) -> Any:
        """``/v1/catalog/register`` with Consul's JSON body (``Node``, ``Address``, ``Service``,
        ``Checks``...)."""
        if not isinstance(registration, Mapping):
            raise TypeError(f"registration: expected a mapping, got {type(registration).__name__}")
        return self._c._call(self._c._n.catalog_register, None, json.dumps(dict(registration)))


class _Health(_Area):
    """``/v1/health``."""

    def service(self, name: str, *, passing: bool = False, tag: str | None = None,
                consistent: bool = False, stale: bool = False) -> Any:
        """Instances of ``name`` with their nodes and checks."""
        _str(name, "name")
        if tag is not None:
            _str(tag, "tag")
        return self._c._call(self._c._n.health_service,
                             lambda s: [ServiceEntry._from_json(e) for e in json.loads(s)],
                             name, bool(passing), tag, _consistency(consistent, stale))

    def checks(self, name: str) -> Any:
        """Checks of service ``name``."""
        _str(name, "name")
        return self._c._call(self._c._n.health_checks,
                             lambda s: [HealthCheck._from_json(c) for c in json.loads(s)], name)

    def state(self, state: str) -> Any:
        """Checks in ``state`` (``any``, ``passing``, ``warning``, ``critical``)."""
        _str(state, "state")
        return self._c._call(self._c._n.health_state,
                             lambda s: [HealthCheck._from_json(c) for c in json.loads(s)], state)


class _AgentAPI(_Area):
    """``/v1/agent``."""

    def self(self) -> Any:
        """``/v1/agent/self``."""
        return self._c._call(self._c._n.agent_self, json.loads)

    def services(self) -> Any:
        """The services registered on this agent, ``{service ID: Service}``."""
        return self._c._call(self._c._n.agent_services,
                             lambda s: {k: Service._from_json(v) for k, v in json.loads(s).items()})

    def checks(self) -> Any:
        """The checks registered on this agent, ``{check ID: HealthCheck}``."""
        return self._c._call(self._c._n.agent_checks,
                             lambda s: {k: HealthCheck._from_json(v) for k, v in json.loads(s).items()})

    def service_register(self, name: str, *, port: int | None = None, address: str | None = None,
                         tags: Iterable[str] = (), meta: Mapping[str, str] | None = None,
                         check: Check | Iterable[Check] | None = None, id: str | None = None) -> Any:
        """Registers a service (with its checks) on the agent; nothing keeps TTL checks alive
        (see :func:`consul_rs.register` for that)."""
        args = _registration_args(name, port, address, tags, meta, check, id)
        return self._c._call(self._c._n.service_register, None, *args)

    def service_deregister(self, service_id: str) -> Any:
        """Deregisters a service."""
        _str(service_id, "service_id")
        return self._c._call(self._c._n.service_deregister, None, service_id)

    def check_pass(self, check_id: str, note: str | None = None) -> Any:
        """Marks a TTL check passing."""
        return self._c._call(self._c._n.check_update_ttl, None, _str(check_id, "check_id"), "pass", note)

    def check_warn(self, check_id: str, note: str | None = None) -> Any:
        """Marks a TTL check warning."""
        return self._c._call(self._c._n.check_update_ttl, None, _str(check_id, "check_id"), "warn", note)

    def check_fail(self, check_id: str, note: str | None = None) -> Any:
        """Marks a TTL check critical."""
        return self._c._call(self._c._n.check_update_ttl, None, _str(check_id, "check_id"), "fail", note)

    def members(self, wan: bool = False) -> Any:
        """The members of the agent's LAN gossip pool (the servers' WAN pool with ``wan``),
        itself included, as :class:`AgentMember` objects."""
        return self._c._call(self._c._n.agent_members, lambda ms: [AgentMember._from_native(m) for m in ms],
                             _bool(wan, "wan"))

    def join(self, address: str) -> Any:
        """Asks the agent to join the gossip pool of the agent at ``address`` (``host`` or
        ``host:port`` of its serf_lan listener, e.g. an :attr:`Agent.serf_addr`)."""
        return self._c._call(self._c._n.agent_join, None, _str(address, "address"))

    def leave(self) -> Any:
        """Asks the agent to leave its pool gracefully: the others list it as ``left``, a
        client agent's node leaves the catalog, and an agent process then exits. For an
        :class:`Agent` embedded in this process use :meth:`Agent.leave`, which also stops it."""
        return self._c._call(self._c._n.agent_leave, None)

    def force_leave(self, node: str, prune: bool = False) -> Any:
        """Marks the failed member ``node`` as left (``prune``: forget it at once).
        :class:`NotFoundError` when no member has that name."""
        return self._c._call(self._c._n.agent_force_leave, None, _str(node, "node"), _bool(prune, "prune"))


class _Event(_Area):
    """``/v1/event``: user events, spread to every agent by gossip."""

    def fire(self, name: str, payload: bytes | str = b"", *, node: str | None = None, service: str | None = None,
             tag: str | None = None) -> Any:
        """Fires the user event ``name`` with ``payload`` (at most 512 bytes, else
        :class:`TooLargeError`), for the agents whose node name matches the ``node`` regex and
        that run a service matching ``service`` (with a tag matching ``tag``). Returns the
        :class:`UserEvent` with its ID."""
        _str(name, "name")
        data = _bytes(payload, "payload")
        _opt_str(node, "node")
        _opt_str(service, "service")
        _opt_str(tag, "tag")
        if tag is not None and service is None:
            raise _invalid("tag: a tag filter needs a service filter")
        return self._c._call(self._c._n.event_fire, UserEvent._from_native, name, data, node, service, tag)

    def list(self, name: str | None = None) -> Any:
        """The recent user events this agent has seen (only those named ``name`` if given),
        oldest first."""
        return self._c._call(self._c._n.event_list, lambda es: [UserEvent._from_native(e) for e in es],
                             _opt_str(name, "name"))


class _Session(_Area):
    """``/v1/session``."""

    def create(self, *, name: str = "", ttl: float | str | None = None, behavior: str = "release",
               lock_delay: float | str | None = None) -> Any:
        """Creates a session; returns its ID."""
        body: dict[str, Any] = {"Name": name, "Behavior": behavior}
        if ttl is not None:
            body["TTL"] = f"{int(parse_duration(ttl, 'ttl') * 1000)}ms"
        if lock_delay is not None:
            body["LockDelay"] = f"{int(parse_duration(lock_delay, 'lock_delay') * 1000)}ms"
        return self._c._call(self._c._n.session_create, None, json.dumps(body))

    def destroy(self, session_id: str) -> Any:
        """Destroys a session."""
        return self._c._call(self._c._n.session_destroy, None, _str(session_id, "session_id"))

    def renew(self, session_id: str) -> Any:
        """Renews a session; :class:`NotFoundError` once it is gone."""
        return self._c._call(self._c._n.session_renew, None, _str(session_id, "session_id"))


class _Watches(_Area):
    """Watches over blocking queries: iterate, ``async for``, or :meth:`Watch.subscribe`."""

    def _make(self, kind: str, target: str, passing: bool = False, tag: str | None = None,
              wait: float | str = 300.0) -> Watch:
        native = self._c._n.watch(kind, target, passing, tag, parse_duration(wait, "wait"), "")
        return Watch(native, self._c._async)

    def key(self, key: str, *, wait: float | str = 300.0) -> Watch:
        """Watches one key: events carry ``KVPair | None``."""
        return self._make("key", _str(key, "key"), wait=wait)

    def kv_prefix(self, prefix: str, *, wait: float | str = 300.0) -> Watch:
        """Watches every key under ``prefix``: events carry ``list[KVPair]``."""
        return self._make("key_prefix", _str(prefix, "prefix", empty=True), wait=wait)

    def service(self, name: str, *, passing: bool = True, tag: str | None = None,
                wait: float | str = 300.0) -> Watch:
        """Watches a service's instances: events carry ``list[ServiceEntry]``."""
        return self._make("service", _str(name, "name"), bool(passing), tag, wait)

    def checks(self, service: str, *, wait: float | str = 300.0) -> Watch:
        """Watches a service's checks: events carry ``list[HealthCheck]``."""
        return self._make("checks", _str(service, "service"), wait=wait)

    def services(self, *, wait: float | str = 300.0) -> Watch:
        """Watches the service list: events carry ``{name: [tags]}``."""
        return self._make("services", "", wait=wait)

    def nodes(self, *, wait: float | str = 300.0) -> Watch:
        """Watches the node list: events carry ``list[Node]``."""
        return self._make("nodes", "", wait=wait)

    def events(self, name: str | None = None, *, wait: float | str = 300.0) -> Watch:
        """Watches the user events this agent receives (only those named ``name`` if given).
        Like Consul's event watch, the first delivery carries the events the agent already
        holds and each later one only the new events, as ``list[UserEvent]``, oldest first."""
        return self._make("events", "" if name is None else _str(name, "name"), wait=wait)


class Watch:
    """A running watch. The first event is the current result; each later one differs from
    the one before. Iterating ends when the watch is closed."""

    def __init__(self, native: _native.NativeWatch, is_async: bool) -> None:
        self._w = native
        self._async = is_async
        self._last_event_id: str | None = None
        _track(self)

    def _event(self, t: Any) -> WatchEvent | None:
        if t is None:
            return None
        index, kind, payload = t
        value = _watch_value(kind, payload)
        if kind == "events":
            value = self._new_events(value)
        return WatchEvent(index, value)

    def _new_events(self, events: list[UserEvent]) -> list[UserEvent]:
        # The agent answers with its whole recent buffer: keep what follows the newest event
        # already delivered (all of it if that one has rotated out), as Consul's watch does.
        ids = [e.id for e in events]
        if self._last_event_id in ids:
            events = events[ids.index(self._last_event_id) + 1:]
        if events:
            self._last_event_id = events[-1].id
        return events

    def next(self, timeout: float | None = None) -> WatchEvent | None:
        """Blocks (GIL released, Ctrl-C honoured) until the next change; ``None`` once closed.
        With ``timeout``, raises :class:`ConsulTimeoutError` when nothing changed in time."""
        return self._event(self._w.next(timeout, is_async=False))

    async def anext(self, timeout: float | None = None) -> WatchEvent | None:
        """:meth:`next` as a coroutine; cancelling the task stops the wait."""
        return self._event(await self._w.next(timeout, is_async=True))

    def __iter__(self) -> Watch:
        return self

    def __next__(self) -> WatchEvent:
        ev = self.next()
        if ev is None:
            raise StopIteration
        return ev

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> WatchEvent:
        ev = await self.anext()
        if ev is None:
            raise StopAsyncIteration
        return ev

    def subscribe(self, callback: Callable[[WatchEvent], None], *,
                  on_error: Callable[[BaseException], None] | None = None) -> Subscription:
        """Calls ``callback`` with every event from a daemon thread (never on a Rust thread)."""
        if not callable(callback):
            raise TypeError("callback: expected a callable")
        return Subscription(self, callback, on_error)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._w.closed

    def close(self) -> None:
        """Stops the watch and wakes a pending :meth:`next`. Idempotent."""
        self._w.close()

    _atexit = close

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> Watch:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self._w.close()
        except Exception:  # noqa: BLE001
            pass


class Subscription:
    """A daemon thread feeding a watch's events to a callback."""

    def __init__(self, watch: Watch, callback: Callable[[WatchEvent], None],
                 on_error: Callable[[BaseException], None] | None) -> None:
        self._watch = watch
        self._stop = threading.Event()

        def run() -> None:
            while not self._stop.is_set():
                try:
                    ev = watch.next(timeout=1.0)
                except ConsulTimeoutError:
                    continue
                except BaseException as e:  # noqa: BLE001
                    if on_error is not None:
                        on_error(e)
                    return
                if ev is None or self._stop.is_set():
                    return
                try:
                    callback(ev)
                except BaseException as e:  # noqa: BLE001
                    if on_error is not None:
                        on_error(e)

        self._thread = threading.Thread(target=run, name="consul_rs-subscription", daemon=True)
        self._thread.start()

    def stop(self, join: bool = True) -> None:
        """Stops delivering and closes the watch."""
        self._stop.set()
        self._watch.close()
        if join and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5.0)


class Discovery:
    """A live set of a service's passing instances, kept current by a watch; :meth:`pick`
    answers locally with no network round trip."""

    def __init__(self, native: _native.NativeDiscovery, is_async: bool) -> None:
        self._d = native
        self._async = is_async
        _track(self)

    def ready(self, timeout: float = 10.0) -> Any:
        """Waits until the first result arrived (a coroutine on an AsyncClient)."""
        return self._d.ready(_seconds(timeout, "timeout"), is_async=self._async)

    def pick(self, strategy: str = "round_robin", *, key: str | None = None) -> ServiceEntry | None:
        """One instance, or ``None`` when none is passing. ``strategy``: ``round_robin``,
        ``random``, ``weighted``, ``consistent_hash`` (needs ``key``), ``nearest`` (the lowest
        estimated round-trip time from the local agent by network coordinates; round-robin while
        the agent or the instances have none), ``least_latency`` (by the latencies reported with
        :meth:`report`). Every strategy leaves out instances ejected for failing."""
        _str(strategy, "strategy")
        s = self._d.pick(strategy, key)
        return None if s is None else ServiceEntry._from_json(json.loads(s))

    def report(self, instance: ServiceEntry, *, latency: float, ok: bool = True) -> None:
        """Reports how a call to ``instance`` went: ``latency`` in seconds and whether it
        succeeded. Drives ``least_latency`` picks and passive outlier ejection (an instance with
        repeated failures, or too high an error rate, is left out for a while)."""
        if not isinstance(instance, ServiceEntry):
            raise TypeError(f"instance: expected a ServiceEntry from pick(), got {type(instance).__name__}")
        self._d.report(instance.node.node, instance.service.id, _seconds(latency, "latency"), bool(ok))

    @contextlib.contextmanager
    def call(self, strategy: str = "least_latency", *, key: str | None = None) -> Iterator[ServiceEntry]:
        """Picks an instance for one call and reports it when the block ends: its duration, and
        failure if the block raised. ``with d.call() as inst: requests.get(...)``. Raises
        :class:`NotFoundError` when no instance is passing."""
        inst = self.pick(strategy, key=key)
        if inst is None:
            raise NotFoundError("no passing instance to call", "NOT_FOUND")
        start = time.monotonic()
        ok = False
        try:
            yield inst
            ok = True
        finally:
            self.report(inst, latency=time.monotonic() - start, ok=ok)

    def configure_balancer(self, **settings: float) -> None:
        """Tunes least-latency and ejection: ``ewma_alpha``, ``decay_half_life`` (s),
        ``consecutive_failures``, ``max_error_rate``, ``error_window`` (s), ``min_requests``,
        ``base_ejection`` (s), ``max_ejection`` (s), ``max_ejected_share``."""
        self._d.configure_balancer(**settings)

    def set_locality_policy(
        self,
        *,
        min_healthy: int | None = None,
        zone_strategy: str | None = None,
        region_strategy: str | None = None,
        other_strategy: str | None = None,
        locality: Locality | tuple[str, str] | None = None,
    ) -> None:
        """Tunes ``pick("locality")``: instances in the caller's zone first, then its region, then
        anywhere, widening when the nearer ring has fewer than ``min_healthy`` passing,
        not-ejected instances; each ring picks with its own strategy (``zone_strategy``,
        ``region_strategy``, ``other_strategy``, any strategy name but ``locality``).
        ``locality`` (a :class:`Locality` or ``(region, zone)``) is the caller's; by default the
        local agent's ``locality``. Omitted settings keep their values; a bad one raises
        :class:`~consul_rs.errors.InvalidArgumentError` and changes nothing."""
        region = zone = None
        if locality is not None:
            region, zone = (locality.region, locality.zone) if isinstance(locality, Locality) else locality
            _str(region, "locality.region", empty=True)
            _str(zone, "locality.zone", empty=True)
        for name, s in (("zone_strategy", zone_strategy), ("region_strategy", region_strategy),
                        ("other_strategy", other_strategy)):
            if s is not None:
                _str(s, name)
        if min_healthy is not None and (isinstance(min_healthy, bool) or not isinstance(min_healthy, int)
                                        or min_healthy < 0):
            raise _invalid(f"min_healthy: expected a count, got {min_healthy!r}")
        self._d.set_locality_policy(min_healthy, zone_strategy, region_strategy, other_strategy, region, zone)

    @property
    def caller_locality(self) -> Locality | None:
        """The caller's locality ``pick("locality")`` uses (set, else the local agent's)."""
        loc = self._d.caller_locality()
        return None if loc is None else Locality(region=loc[0], zone=loc[1])

    def is_ejected(self, instance: ServiceEntry) -> bool:
        """Whether ``instance`` is left out of picks for failing."""
        return self._d.is_ejected(instance.node.node, instance.service.id)

    @property
    def instances(self) -> list[ServiceEntry]:
        """The current passing instances, nearest first when network coordinates exist."""
        return [ServiceEntry._from_json(e) for e in json.loads(self._d.instances())]

    @property
    def index(self) -> int:
        """The index of the current set."""
        return self._d.index

    def close(self) -> None:
        """Stops tracking. Idempotent."""
        self._d.close()

    _atexit = close

    def __enter__(self) -> Discovery:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> Discovery:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()


class Lock:
    """A lock on a key, on a session renewed in the background (Consul's lock recipe).
    ``with client.lock("key"):`` holds it for the block."""

    def __init__(self, client: _Base, key: str, value: bytes, ttl: float, lock_delay: float | None,
                 wait: float | None) -> None:
        self._c = client
        self.key = key
        self._args = (value, ttl, lock_delay, wait)
        self._held: _native.NativeLock | None = None

    def acquire(self, timeout: float | None = None) -> bool:
        """Blocks until held; ``False`` when ``timeout`` (or the lock's ``wait``) passed."""
        value, ttl, delay, wait = self._args
        try:
            self._held = self._c._n.lock(self.key, value, ttl, delay, timeout if timeout is not None else wait,
                                         is_async=False)
        except ConsulTimeoutError:
            return False
        _track(self)
        return True

    async def acquire_async(self, timeout: float | None = None) -> bool:
        """:meth:`acquire` as a coroutine."""
        value, ttl, delay, wait = self._args
        try:
            self._held = await self._c._n.lock(self.key, value, ttl, delay,
                                               timeout if timeout is not None else wait, is_async=True)
        except ConsulTimeoutError:
            return False
        _track(self)
        return True

    @property
    def held(self) -> bool:
        """Whether the lock is held (its session alive)."""
        return self._held is not None and self._held.held

    @property
    def session(self) -> str | None:
        """The holding session's ID."""
        return None if self._held is None else self._held.session

    def release(self) -> None:
        """Releases the key and destroys the session. Idempotent."""
        h, self._held = self._held, None
        if h is not None:
            h.release(is_async=False)

    async def release_async(self) -> None:
        """:meth:`release` as a coroutine."""
        h, self._held = self._held, None
        if h is not None:
            await h.release(is_async=True)

    _atexit = release

    def __enter__(self) -> Lock:
        if not self.acquire():
            raise ConsulTimeoutError(f"lock {self.key!r} not acquired in time", "TIMEOUT")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    async def __aenter__(self) -> Lock:
        if not await self.acquire_async():
            raise ConsulTimeoutError(f"lock {self.key!r} not acquired in time", "TIMEOUT")
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.release_async()


class LeaderElection:
    """Campaigns for leadership of ``key`` (the native SDK's election: acquire the lock, hold it
    while the session lives, campaign again when it is lost, until :meth:`resign`); a daemon
    thread turns its changes into the ``on_elected`` / ``on_lost`` callbacks."""

    def __init__(self, client: _Base, key: str, value: bytes, ttl: float,
                 on_elected: Callable[[], None] | None, on_lost: Callable[[], None] | None) -> None:
        self._e = client._n.elect(key, value, ttl)
        self._stop = threading.Event()
        self._elected = threading.Event()
        self._on_elected, self._on_lost = on_elected, on_lost
        self._thread = threading.Thread(target=self._run, name="consul_rs-election", daemon=True)
        _track(self)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                event = self._e.next_event(0.2)
            except ConsulError:
                self._stop.wait(0.2)
                continue
            if event == "elected":
                self._elected.set()
                if self._on_elected:
                    self._on_elected()
            elif event == "lost":
                self._elected.clear()
                if self._on_lost and not self._stop.is_set():
                    self._on_lost()
            elif self._e.resigned:
                return

    @property
    def is_leader(self) -> bool:
        """Whether this process currently holds leadership."""
        return self._elected.is_set() and self._e.is_leader

    def wait_for_leadership(self, timeout: float | None = None) -> bool:
        """Waits until elected; ``False`` on timeout."""
        return self._elected.wait(timeout)

    def resign(self) -> None:
        """Stops campaigning and gives up leadership. Idempotent."""
        self._stop.set()
        try:
            self._e.resign()
        except ConsulError:
            pass
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        self._elected.clear()

    def _atexit(self) -> None:
        self._stop.set()
        self._e.resign()

    def __enter__(self) -> LeaderElection:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.resign()


class Registration:
    """A service registered by this process, its TTL checks kept passing in the background;
    deregistered by :meth:`close`, context exit or interpreter exit."""

    def __init__(self, native: _native.NativeRegistration, is_async: bool) -> None:
        self._r = native
        self._async = is_async
        _track(self)
        with _live_lock:
            _pinned.add(self)

    def _unpin(self) -> None:
        with _live_lock:
            _pinned.discard(self)

    @property
    def service_id(self) -> str:
        """The registered service ID."""
        return self._r.service_id

    @property
    def check_ids(self) -> list[str]:
        """The IDs of its checks."""
        return self._r.check_ids

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._r.closed

    def close(self) -> Any:
        """Stops the keep-alive and deregisters (a coroutine on an AsyncClient). Idempotent."""
        self._unpin()
        return self._r.close(is_async=self._async)

    def _atexit(self) -> None:
        self._unpin()
        if not self._r.closed:
            self._r.close(is_async=False)

    def __enter__(self) -> Registration:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._unpin()
        self._r.close(is_async=False)

    async def __aenter__(self) -> Registration:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._unpin()
        await self._r.close(is_async=True)


def _embedded_agent() -> Any:
    """The Agent embedded in this process that :func:`register` uses when given no ``client`` or
    ``agent``: the running one, ``None`` when none runs. With several running, which one is meant
    is unclear: :class:`InvalidArgumentError` (pass ``agent=`` or ``client=``)."""
    with _live_lock:
        agents = [o for o in _live if type(o).__name__ == "Agent" and getattr(o, "_owner_pid", None) == os.getpid()]
    running = [a for a in agents if a.running]
    if len(running) > 1:
        raise _invalid(f"agent: {len(running)} Agents run in this process: pass agent= or client= to choose one")
    return running[0] if running else None


def _local_client(token: str | None) -> Client:
    """The client :func:`register` uses when given no ``client`` or ``agent``: the Agent embedded
    in this process, else ``CONSUL_HTTP_ADDR``, else ``127.0.0.1:8500`` (the order of the Node
    and C packages too)."""
    kw: dict[str, Any] = {} if token is None else {"token": token}
    agent = _embedded_agent()
    client = agent.client(**kw) if agent is not None else Client(**kw)
    assert isinstance(client, Client)
    return client


def register(name: str, port: int | None = None, address: str | None = None, tags: Iterable[str] = (),
             meta: Mapping[str, str] | None = None, check: Check | Iterable[Check] | None = None, *,
             id: str | None = None, client: Client | None = None, agent: Any = None,
             token: str | None = None) -> Registration:
    """Registers this process's service with the local agent, keeps its TTL checks passing, and
    deregisters it at :meth:`Registration.close`, context exit and interpreter exit.

    The agent is ``client`` or ``agent`` when given, else the :class:`Agent` embedded in this
    process, else the one at ``CONSUL_HTTP_ADDR``, else ``127.0.0.1:8500``. ``token`` is the ACL
    token the registration (and its TTL updates) sends when no ``client`` is given (default
    ``CONSUL_HTTP_TOKEN``). Bad values raise :class:`InvalidArgumentError` before anything is
    sent."""
    if client is not None and token is not None:
        raise _invalid("token: pass it to the client, or pass no client")
    if check is not None and not isinstance(check, Check):
        check = list(check)  # read twice below: a generator would be empty the second time
    if isinstance(tags, Iterable) and not isinstance(tags, (str, list, tuple)):
        tags = list(tags)
    if client is None:
        if agent is not None:
            client = agent.client(**({} if token is None else {"token": token}))
        else:
            # Checked before an agent is chosen, so a bad value is refused the same way wherever
            # the registration would have gone.
            _registration_args(name, port, address, tags, meta, check, id)
            client = _local_client(token)
    reg = client.register(name, port=port, address=address, tags=tags, meta=meta, check=check, id=id)
    assert isinstance(reg, Registration)
    return reg
