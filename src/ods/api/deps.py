"""What routes receive through ``Depends``: the process's resources and checked path names."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ods.api.resources import Resources
from ods.domain.names import NameKind, check_name


def resources_of(request: Request) -> Resources:
    """The resources the app was created with (``create_app(settings, resources)``)."""
    resources: Resources = request.app.state.resources
    return resources


ServerResources = Annotated[Resources, Depends(resources_of)]


def checked(kind: NameKind, name: str) -> str:
    """``name`` when it follows the naming rule; else InvalidNameError (40001) before anything is opened:
    ``..``, NUL or control characters never reach the catalog, an object key or a log line."""
    return check_name(kind, name)
