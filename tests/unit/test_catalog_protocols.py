"""The catalog's narrow Protocols: each lists its table group's methods with the implementation's exact
signatures, and together they cover every public method of ``Catalog`` once.

mypy checks that ``Catalog`` satisfies every Protocol (``ods.adapters.catalog.protocols``); this test
holds the letter of the signatures (names, kinds, defaults and resolved annotations), so a parameter
added to a method and not to its Protocol fails here rather than at a consumer.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any

import pytest

import ods.adapters.catalog as catalog_package
from ods.adapters.catalog import (
    ApiKeyCatalog,
    AuditCatalog,
    Catalog,
    CatalogAdmin,
    ConversationCatalog,
    DatasetCatalog,
    EndpointCatalog,
    KnowledgeCatalog,
    LoginSessionCatalog,
    ModelCatalog,
    RunCatalog,
    WatchCatalog,
    WebhookCatalog,
)

PROTOCOLS: tuple[type[Any], ...] = (
    CatalogAdmin,
    DatasetCatalog,
    ModelCatalog,
    EndpointCatalog,
    KnowledgeCatalog,
    ConversationCatalog,
    WatchCatalog,
    ApiKeyCatalog,
    WebhookCatalog,
    RunCatalog,
    AuditCatalog,
    LoginSessionCatalog,
)
NOT_IN_A_PROTOCOL = {"open"}
"""``Catalog.open`` is the constructor (a classmethod): consumers receive a catalog, they do not open one."""


def _members(owner: type[Any]) -> dict[str, Callable[..., Any]]:
    """The public methods (and property getters) an owner class defines or inherits."""
    members: dict[str, Callable[..., Any]] = {}
    for name in dir(owner):
        if name.startswith("_"):
            continue
        value = inspect.getattr_static(owner, name)
        if isinstance(value, property) and value.fget is not None:
            members[name] = value.fget
        elif inspect.isfunction(value):
            members[name] = value
    return members


def _signature(function: Callable[..., Any]) -> list[tuple[str, object, object, object]]:
    hints = typing.get_type_hints(function)
    return [
        (parameter.name, parameter.kind, parameter.default, hints.get(parameter.name))
        for parameter in inspect.signature(function).parameters.values()
    ] + [("return", None, None, hints.get("return"))]


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda protocol: protocol.__name__)
def test_each_protocol_method_has_the_catalog_signature(protocol: type[Any]) -> None:
    implemented = _members(Catalog)
    listed = _members(protocol)
    assert listed, f"{protocol.__name__} lists no method"
    for name, declared in listed.items():
        assert name in implemented, f"{protocol.__name__}.{name} is not a Catalog method"
        assert _signature(declared) == _signature(implemented[name]), f"{protocol.__name__}.{name}"


def test_every_public_catalog_method_is_in_exactly_one_protocol() -> None:
    owners: dict[str, list[str]] = {}
    for protocol in PROTOCOLS:
        for name in _members(protocol):
            owners.setdefault(name, []).append(protocol.__name__)
    public = set(_members(Catalog))
    assert {name: found for name, found in owners.items() if len(found) > 1} == {}
    assert sorted(public - set(owners) - NOT_IN_A_PROTOCOL) == []


def test_the_protocols_are_exported_with_the_catalog() -> None:
    assert {protocol.__name__ for protocol in PROTOCOLS} <= set(catalog_package.__all__)
