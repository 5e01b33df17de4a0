"""Result types (frozen dataclasses with attribute access) and check definitions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import _native

__all__ = ["KVPair", "Node", "Locality", "Service", "HealthCheck", "ServiceEntry", "AgentMember", "UserEvent", "WatchEvent", "Check",
           "parse_duration"]

def parse_duration(value: float | int | str, name: str) -> float:
    """Seconds from a number or a Go-style duration string (``"10s"``, ``"500ms"``, ``"1m30s"``).

    Parsed by the native SDK, the one implementation Node and C use too; a bad value raises
    :class:`~consul_rs.errors.InvalidArgumentError` (a ``ValueError``)."""
    if isinstance(value, bool):
        raise TypeError(f"{name}: expected seconds or a duration string, got bool")
    if isinstance(value, (int, float, str)):
        return _native.parse_duration(value, name)
    raise TypeError(f"{name}: expected seconds or a duration string, got {type(value).__name__}")


@dataclass(frozen=True)
class KVPair:
    """A KV entry."""

    key: str
    value: bytes | None
    flags: int = 0
    create_index: int = 0
    modify_index: int = 0
    lock_index: int = 0
    session: str | None = None

    @classmethod
    def _from_native(cls, t: Any) -> KVPair | None:
        return None if t is None else cls(*t)


@dataclass(frozen=True)
class Node:
    """A node of the catalog."""

    id: str = ""
    node: str = ""
    address: str = ""
    datacenter: str = ""
    tagged_addresses: dict[str, str] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)
    #: Where the node runs (its agent's ``locality``), or ``None``.
    locality: Locality | None = None

    @classmethod
    def _from_json(cls, d: dict[str, Any]) -> Node:
        return cls(
            id=d.get("ID", ""),
            node=d.get("Node", ""),
            address=d.get("Address", ""),
            datacenter=d.get("Datacenter", ""),
            tagged_addresses=d.get("TaggedAddresses") or {},
            meta=d.get("Meta") or {},
            locality=Locality._from_json(d.get("Locality")),
        )


@dataclass(frozen=True)
class Locality:
    """Where a node or service runs (Consul 1.17+ ``Locality``): a region and a zone in it."""

    region: str = ""
    zone: str = ""

    @classmethod
    def _from_json(cls, d: dict[str, Any] | None) -> Locality | None:
        return None if not d else cls(region=d.get("Region", ""), zone=d.get("Zone", ""))


@dataclass(frozen=True)
class Service:
    """A service instance."""

    id: str = ""
    service: str = ""
    tags: list[str] = field(default_factory=list)
    address: str = ""
    port: int = 0
    meta: dict[str, str] = field(default_factory=dict)
    weights: dict[str, int] = field(default_factory=dict)
    #: Where the instance runs (defaults to its agent's locality), or ``None``.
    locality: Locality | None = None

    @classmethod
    def _from_json(cls, d: dict[str, Any]) -> Service:
        return cls(
            id=d.get("ID", ""),
            service=d.get("Service", ""),
            tags=d.get("Tags") or [],
            address=d.get("Address", ""),
            port=d.get("Port", 0),
            meta=d.get("Meta") or {},
            weights=d.get("Weights") or {},
            locality=Locality._from_json(d.get("Locality")),
        )


@dataclass(frozen=True)
class HealthCheck:
    """A health check and its status (``passing``, ``warning``, ``critical``)."""

    node: str = ""
    check_id: str = ""
    name: str = ""
    status: str = ""
    output: str = ""
    service_id: str = ""
    service_name: str = ""
    #: Measured probe latency (a Go duration such as ``"312ms"``) on checks with latency
    #: thresholds, else ``None``.
    latency: str | None = None

    @classmethod
    def _from_json(cls, d: dict[str, Any]) -> HealthCheck:
        return cls(
            node=d.get("Node", ""),
            check_id=d.get("CheckID", ""),
            name=d.get("Name", ""),
            status=d.get("Status", ""),
            output=d.get("Output", ""),
            service_id=d.get("ServiceID", ""),
            service_name=d.get("ServiceName", ""),
            latency=d.get("Latency"),
        )


@dataclass(frozen=True)
class ServiceEntry:
    """One instance of a service with its node and checks."""

    node: Node
    service: Service
    checks: list[HealthCheck]

    @property
    def address(self) -> str:
        """The address to connect to: the service's, else the node's."""
        return self.service.address or self.node.address

    @property
    def port(self) -> int:
        """The service port."""
        return self.service.port

    @classmethod
    def _from_json(cls, d: dict[str, Any]) -> ServiceEntry:
        return cls(
            node=Node._from_json(d.get("Node") or {}),
            service=Service._from_json(d.get("Service") or {}),
            checks=[HealthCheck._from_json(c) for c in d.get("Checks") or []],
        )


_MEMBER_STATUS = {0: "none", 1: "alive", 2: "leaving", 3: "left", 4: "failed"}


@dataclass(frozen=True)
class AgentMember:
    """A member of an agent's gossip pool (``/v1/agent/members``).

    ``tags`` holds the Serf tags (``role``: ``consul`` for servers, ``node`` for client agents;
    ``dc``, ``port``, ...). ``status`` is Serf's number: 0 none, 1 alive, 2 leaving, 3 left,
    4 failed; :attr:`status_name` spells it.
    """

    name: str
    addr: str
    port: int
    tags: dict[str, str] = field(default_factory=dict)
    status: int = 0

    @property
    def status_name(self) -> str:
        """``alive``, ``leaving``, ``left``, ``failed`` or ``none``."""
        return _MEMBER_STATUS.get(self.status, "none")

    @property
    def role(self) -> str:
        """``consul`` for a server, ``node`` for a client agent (the ``role`` tag)."""
        return self.tags.get("role", "")

    @classmethod
    def _from_native(cls, t: Any) -> AgentMember:
        name, addr, port, tags, status = t
        return cls(name, addr, port, dict(tags), status)


@dataclass(frozen=True)
class UserEvent:
    """A user event (``/v1/event/fire``, ``/v1/event/list``).

    ``payload`` is ``None`` when empty. The filters are the regexes the event was addressed
    with (``""``: everyone). ``ltime`` is the event's Lamport time in the pool (0 in the answer
    of :meth:`fire`).
    """

    id: str
    name: str
    payload: bytes | None = None
    node_filter: str = ""
    service_filter: str = ""
    tag_filter: str = ""
    version: int = 1
    ltime: int = 0

    @classmethod
    def _from_native(cls, t: Any) -> UserEvent:
        return cls(*t)


@dataclass(frozen=True)
class WatchEvent:
    """One watch delivery: the result and the ``X-Consul-Index`` it was read at.

    ``value`` is ``KVPair | None`` for key watches, ``list[KVPair]`` for prefixes,
    ``list[ServiceEntry]`` for services, ``list[HealthCheck]`` for checks, ``list[Node]`` for
    nodes, ``{name: [tags]}`` for the service list, ``list[UserEvent]`` (oldest first) for events.
    """

    index: int
    value: Any


@dataclass(frozen=True)
class Check:
    """A check attached to a registration. Build one with :meth:`http`, :meth:`tcp`,
    :meth:`grpc` or :meth:`ttl`; each is validated by the native SDK when built, with the same
    rules and messages as the Node and C packages."""

    kind: str
    target: str
    interval: float | None = None
    timeout: float | None = None
    deregister_critical_after: float | None = None
    #: The TTL in seconds (TTL checks; their ``target`` is the same number as text).
    ttl_seconds: float | None = None

    @staticmethod
    def _opt(v: float | str | None, name: str) -> float | None:
        return None if v is None else parse_duration(v, name)

    @staticmethod
    def _target(v: Any, name: str) -> str:
        if not isinstance(v, str):
            raise TypeError(f"{name}: expected str, got {type(v).__name__}")
        return v

    def _validated(self) -> Check:
        _native.validate_check(*self._native())
        return self

    @classmethod
    def http(cls, url: str, *, interval: float | str = 10.0, timeout: float | str | None = None,
             deregister_critical_after: float | str | None = None) -> Check:
        """An HTTP GET check: 2xx passing, 429 warning, anything else critical."""
        return cls("http", cls._target(url, "url"), cls._opt(interval, "interval"), cls._opt(timeout, "timeout"),
                   cls._opt(deregister_critical_after, "deregister_critical_after"))._validated()

    @classmethod
    def tcp(cls, address: str, *, interval: float | str = 10.0, timeout: float | str | None = None,
            deregister_critical_after: float | str | None = None) -> Check:
        """A TCP connect check to ``host:port``."""
        return cls("tcp", cls._target(address, "address"), cls._opt(interval, "interval"),
                   cls._opt(timeout, "timeout"),
                   cls._opt(deregister_critical_after, "deregister_critical_after"))._validated()

    @classmethod
    def grpc(cls, target: str, *, interval: float | str = 10.0, timeout: float | str | None = None,
             deregister_critical_after: float | str | None = None) -> Check:
        """A gRPC health check of ``host:port[/service]``."""
        return cls("grpc", cls._target(target, "target"), cls._opt(interval, "interval"),
                   cls._opt(timeout, "timeout"),
                   cls._opt(deregister_critical_after, "deregister_critical_after"))._validated()

    @classmethod
    def ttl(cls, ttl: float | str, *, deregister_critical_after: float | str | None = None) -> Check:
        """A TTL check: :func:`consul_rs.register` keeps it passing from a background task."""
        seconds = parse_duration(ttl, "ttl")
        # `target` keeps its old text form for readers; the TTL travels as the number `ttl`.
        return cls("ttl", repr(seconds), None, None, cls._opt(deregister_critical_after, "deregister_critical_after"),
                   seconds)._validated()

    def _native(self) -> tuple[str, str, float | None, float | None, float | None, float | None]:
        return (self.kind, self.target, self.ttl_seconds, self.interval, self.timeout, self.deregister_critical_after)
