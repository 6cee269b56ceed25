"""The catalog repository: every read and write of the lineage graph, each in its own short transaction.

Methods return frozen records, never live ORM objects, so callers cannot lazy-load after the session has
closed. Writes that name their content (dataset versions, document versions, chunks) are idempotent; writes
that race on a unique key are retried, so concurrent flows never register the same thing twice.

:class:`Catalog` is composed of one mixin per table group (``datasets.py``, ``models.py``,
``endpoints.py``, ``knowledge.py``, ``conversations.py``, ``watch.py``, ``api_keys.py``, ``webhooks.py``,
``runs.py``, ``audit.py``) over
``base.CatalogBase``; a consumer that needs one group depends on its Protocol in ``protocols.py``.
"""

from __future__ import annotations

from ods.adapters.catalog.api_keys import ApiKeyTables
from ods.adapters.catalog.audit import AuditTables
from ods.adapters.catalog.base import CatalogBase
from ods.adapters.catalog.conversations import ConversationTables
from ods.adapters.catalog.datasets import DatasetTables
from ods.adapters.catalog.endpoints import EndpointTables
from ods.adapters.catalog.knowledge import KnowledgeTables
from ods.adapters.catalog.login_sessions import LoginSessionTables
from ods.adapters.catalog.models import ModelTables
from ods.adapters.catalog.runs import RunTables
from ods.adapters.catalog.watch import WatchTables
from ods.adapters.catalog.webhooks import WebhookTables


class Catalog(
    DatasetTables,
    ModelTables,
    EndpointTables,
    KnowledgeTables,
    ConversationTables,
    WatchTables,
    ApiKeyTables,
    WebhookTables,
    RunTables,
    AuditTables,
    LoginSessionTables,
    CatalogBase,
):
    """The lineage graph over one database, migrated to the newest schema on first use."""
