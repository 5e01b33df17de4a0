"""The shared validation table (bindings/sdk/tests/validation_cases.json) through the Python API.

The Rust SDK, Node and C suites replay the same file: all four accept and refuse the same inputs
with the same messages. Every refusal here is the one error model: ``InvalidArgumentError``,
which is both a ``ConsulError`` (code ``INVALID_ARGUMENT``) and a ``ValueError``. No agent is
needed: public calls go to 127.0.0.1:1, where nothing listens, so an input that passes
validation fails with ``ConsulConnectionError`` instead of being refused."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable
from typing import Any

import pytest

import consul_rs
from consul_rs import Check, Client, ConsulConnectionError, ConsulError, InvalidArgumentError, _native
from consul_rs._client import _registration_args

TABLE = json.loads((pathlib.Path(__file__).resolve().parents[2] / "bindings" / "sdk" / "tests" /
                    "validation_cases.json").read_text())
NOWHERE = "127.0.0.1:1"


def _check(c: dict[str, Any]) -> Check:
    kind, target = c["kind"], c.get("target", "")
    timing = {k: c[k] for k in ("interval", "timeout") if k in c}
    if kind == "ttl":
        return Check.ttl(c["ttl"])
    if kind == "http":
        return Check.http(target, **timing)
    if kind == "tcp":
        return Check.tcp(target, **timing)
    if kind == "grpc":
        return Check.grpc(target, **timing)
    # A kind the builders do not offer: handed to the native layer as it is.
    return Check(kind, target)


def _refusal(f: Callable[[], Any]) -> str | None:
    """``None`` when ``f`` got as far as the network; else the message of its refusal, which must
    be the one error model."""
    try:
        f()
    except ConsulConnectionError:
        return None
    except ConsulError as e:
        assert isinstance(e, InvalidArgumentError), repr(e)
        assert isinstance(e, ValueError)
        assert e.code == "INVALID_ARGUMENT"
        assert e.http_status is None, "refused locally, no agent answered"
        return str(e)
    raise AssertionError("accepted by an agent at 127.0.0.1:1?")


def _register(spec: dict[str, Any], client: Client) -> Any:
    """The public ``consul_rs.register`` with the table's neutral registration."""
    checks = [_check(c) for c in spec.get("checks", [])]
    return consul_rs.register(spec["name"], port=spec.get("port"), address=spec.get("address"),
                              tags=spec.get("tags", ()), meta=spec.get("meta"), check=checks, id=spec.get("id"),
                              client=client)


@pytest.fixture(scope="module")
def nowhere() -> Client:
    return Client(NOWHERE, timeout=2.0)


@pytest.mark.parametrize("case", TABLE["registrations"], ids=lambda c: c["case"])
def test_registration(case: dict[str, Any]) -> None:
    def validate() -> None:
        spec = case["input"]
        checks = [_check(c) for c in spec.get("checks", [])]
        args = _registration_args(spec["name"], spec.get("port"), spec.get("address"), spec.get("tags", ()),
                                  spec.get("meta"), checks, spec.get("id"))
        _native.validate_registration(*args)
        raise ConsulConnectionError("validated", "CONNECTION")  # as far as validation goes

    assert _refusal(validate) == case["error"]


@pytest.mark.parametrize("case", TABLE["registrations"], ids=lambda c: c["case"])
def test_registration_through_register(case: dict[str, Any], nowhere: Client) -> None:
    # The module-level consul_rs.register(), as an application calls it (Check builders included:
    # Check.ttl("ten seconds") is refused there, with the same error).
    assert _refusal(lambda: _register(case["input"], nowhere)) == case["error"]


@pytest.mark.parametrize("case", TABLE["options"], ids=lambda c: c["case"])
def test_option(case: dict[str, Any]) -> None:
    def validate() -> None:
        _native.validate_option(case["kind"], case["input"])
        raise ConsulConnectionError("validated", "CONNECTION")

    assert _refusal(validate) == case["error"]


def _call(name: str, args: dict[str, Any], c: Client) -> Callable[[], Any]:
    """The table's neutral call names on the Python API."""
    calls: dict[str, Callable[[], Any]] = {
        "kv_get": lambda: c.kv.get(args.get("key", "")),
        "kv_put": lambda: c.kv.put(args.get("key", ""), args.get("value", "")),
        "health_state": lambda: c.health.state(args.get("state", "")),
        "lock": lambda: c.lock(args.get("key", ""), ttl=args.get("ttl_ms", 0) / 1000).acquire(timeout=1.0),
        "discover": lambda: c.discover(args.get("service", "")).ready(1.0),
        "watch_key": lambda: c.watch.key(args.get("key", "")).next(timeout=1.0),
        "client": lambda: Client(args.get("address", NOWHERE)).kv.get("k"),
        "register": lambda: _register(args, c),
    }
    return calls[name]


@pytest.mark.parametrize("case", TABLE["calls"], ids=lambda c: c["case"])
def test_call(case: dict[str, Any], nowhere: Client) -> None:
    assert _refusal(_call(case["call"], case["args"], nowhere)) == case["error"]


def test_issue_examples_are_consul_errors() -> None:
    # The two inputs of issue #23, caught as an application catches consul_rs failures.
    with pytest.raises(ConsulError) as ttl:
        Check.ttl("ten seconds")
    with pytest.raises(ConsulError) as port:
        consul_rs.register("web", port=70000, client=Client(NOWHERE))
    for e in (ttl.value, port.value):
        assert isinstance(e, InvalidArgumentError) and isinstance(e, ValueError) and e.code == "INVALID_ARGUMENT"
    # Wrong types stay TypeErrors, as everywhere in Python.
    with pytest.raises(TypeError):
        consul_rs.register("web", port="8080", client=Client(NOWHERE))  # type: ignore[arg-type]
