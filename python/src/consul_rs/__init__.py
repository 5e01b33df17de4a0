"""consul_rs: a Consul client, watches, discovery, locks, self-registration and an embeddable
Consul-compatible node, on a Rust core.

>>> import consul_rs
>>> with consul_rs.Agent() as agent:                       # a node inside this process
...     c = agent.client()
...     c.kv.put("config/db", b"postgres://")
...     c.kv.get("config/db").value
True
b'postgres://'
"""

from __future__ import annotations

from ._agent import Agent
from ._client import (
    AsyncClient,
    Client,
    Discovery,
    LeaderElection,
    Lock,
    Registration,
    Subscription,
    Watch,
    register,
)
from ._types import AgentMember, Check, HealthCheck, KVPair, Locality, Node, Service, ServiceEntry, UserEvent, WatchEvent
from .errors import (
    ConflictError,
    ConsulConnectionError,
    ConsulError,
    ConsulTimeoutError,
    ForkedError,
    InvalidArgumentError,
    NoLeaderError,
    NotFoundError,
    ACLNotFoundError,
    PermissionDeniedError,
    ShutdownError,
    TooLargeError,
    WouldDeadlockError,
)

__version__ = "0.1.0"

__all__ = [
    "Agent", "AsyncClient", "Client", "Discovery", "LeaderElection", "Lock", "Registration",
    "Subscription", "Watch", "register", "AgentMember", "Check", "HealthCheck", "KVPair", "Locality", "Node",
    "Service", "ServiceEntry", "UserEvent", "WatchEvent", "ConsulError", "ConflictError", "ConsulConnectionError",
    "ConsulTimeoutError", "ForkedError", "InvalidArgumentError", "NoLeaderError", "NotFoundError",
    "PermissionDeniedError", "ACLNotFoundError", "ShutdownError", "TooLargeError", "WouldDeadlockError",
]
