"""Errors meant for people: each says what was wrong, the offending value, and what to do."""

from __future__ import annotations


class OdsError(Exception):
    """Base class for every error the platform reports to a user.

    The CLI prints ``str(error)`` as a single line and exits non-zero, so the message
    must stand on its own: name the setting, file, row or key and say how to fix it.
    """


class SettingsError(OdsError):
    """The effective configuration is invalid."""


class CatalogError(OdsError):
    """The catalog database cannot be reached, migrated or queried."""


class NotFoundError(OdsError):
    """A named catalog entity or stored object does not exist."""


class InvalidObjectKeyError(OdsError, ValueError):
    """An object key is unsafe or malformed (path traversal, control characters, ...)."""


class ObjectNotFoundError(NotFoundError):
    """The object store holds no object under the requested key."""


class ObjectStoreError(OdsError):
    """The object store cannot be reached or refused an operation."""
