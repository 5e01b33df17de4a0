"""The shared validation table (bindings/sdk/tests/validation_cases.json) through the Python API.

The Rust SDK, Node and C suites replay the same file: all four accept and refuse the same inputs
with the same messages. No agent is needed: everything here is refused (or passes) before a
request is sent."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from consul_rs import Check, _native
from consul_rs._client import _registration_args

TABLE = json.loads((pathlib.Path(__file__).resolve().parents[2] / "bindings" / "sdk" / "tests" /
                    "validation_cases.json").read_text())


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


def _register(spec: dict[str, Any]) -> None:
    checks = [_check(c) for c in spec.get("checks", [])]
    args = _registration_args(spec["name"], spec.get("port"), spec.get("address"), spec.get("tags", ()),
                              spec.get("meta"), checks, spec.get("id"))
    _native.validate_registration(*args)


@pytest.mark.parametrize("case", TABLE["registrations"], ids=lambda c: c["case"])
def test_registration(case: dict[str, Any]) -> None:
    try:
        _register(case["input"])
        got = None
    except ValueError as e:
        got = str(e)
    assert got == case["error"]


@pytest.mark.parametrize("case", TABLE["options"], ids=lambda c: c["case"])
def test_option(case: dict[str, Any]) -> None:
    try:
        _native.validate_option(case["kind"], case["input"])
        got = None
    except ValueError as e:
        got = str(e)
    assert got == case["error"]
