"""The catalog: one lineage graph (SQLAlchemy 2 ORM, Alembic migrations) on SQLite or PostgreSQL.

Importing this package connects to nothing and reads no settings; build a catalog from a URL with
``Catalog.open(settings.catalog_url)``. ``Catalog`` is composed of one class per table group; a consumer
that needs one group can depend on that group's Protocol (``DatasetCatalog``, ``ModelCatalog``, ...).
"""

from ods.adapters.catalog.audit import AuditCatalog, AuditEntryRecord, AuditFilter
from ods.adapters.catalog.database import (
    create_catalog_engine,
    current_revision,
    head_revision,
    migrate,
)
from ods.adapters.catalog.login_sessions import LoginSessionCatalog, LoginSessionRecord
from ods.adapters.catalog.protocols import (
    ApiKeyCatalog,
    CatalogAdmin,
    ConversationCatalog,
    DatasetCatalog,
    EndpointCatalog,
    KnowledgeCatalog,
    ModelCatalog,
    RunCatalog,
    WatchCatalog,
    WebhookCatalog,
)
from ods.adapters.catalog.records import (
    ApiKeyRecord,
    ChunkRecord,
    ChunkSource,
    CitationRecord,
    ConversationRecord,
    DatasetRecord,
    DatasetVersionRecord,
    DocumentRecord,
    EndpointLineage,
    EndpointRecord,
    IndexedDocument,
    KnowledgeBaseCitation,
    KnowledgeBaseCounts,
    KnowledgeBaseRecord,
    MessageRecord,
    ModelRecord,
    ModelVersionRecord,
    ReplacedVersion,
    ServerRunRecord,
    ValidationRunRecord,
    WebhookDeliveryRecord,
    WebhookRecord,
)
from ods.adapters.catalog.repository import Catalog

__all__ = [
    "ApiKeyCatalog",
    "ApiKeyRecord",
    "AuditCatalog",
    "AuditEntryRecord",
    "AuditFilter",
    "Catalog",
    "CatalogAdmin",
    "ChunkRecord",
    "ChunkSource",
    "CitationRecord",
    "ConversationCatalog",
    "ConversationRecord",
    "DatasetCatalog",
    "DatasetRecord",
    "DatasetVersionRecord",
    "DocumentRecord",
    "EndpointCatalog",
    "EndpointLineage",
    "EndpointRecord",
    "IndexedDocument",
    "KnowledgeBaseCitation",
    "KnowledgeBaseCounts",
    "KnowledgeBaseRecord",
    "KnowledgeCatalog",
    "LoginSessionCatalog",
    "LoginSessionRecord",
    "MessageRecord",
    "ModelCatalog",
    "ModelRecord",
    "ModelVersionRecord",
    "ReplacedVersion",
    "RunCatalog",
    "ServerRunRecord",
    "ValidationRunRecord",
    "WatchCatalog",
    "WebhookCatalog",
    "WebhookDeliveryRecord",
    "WebhookRecord",
    "create_catalog_engine",
    "current_revision",
    "head_revision",
    "migrate",
]
