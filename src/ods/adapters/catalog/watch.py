"""Watched objects: what the bucket watcher last saw of each object (migration 0003)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from ods.adapters.catalog.base import CatalogBase, to_record
from ods.adapters.catalog.records import WatchedObjectRecord
from ods.adapters.catalog.schema import WatchedObject, utcnow
from ods.domain.bucket_diff import SeenObject


class WatchTables(CatalogBase):
    """``watched_objects``: one row per (bucket, key)."""

    def watched_objects(self, bucket: str, prefix: str = "") -> list[WatchedObjectRecord]:
        """The objects the watcher recorded in ``bucket`` under ``prefix`` (deleted ones included), by key."""

        def work(session: Session) -> list[WatchedObjectRecord]:
            query = select(WatchedObject).where(WatchedObject.bucket == bucket).order_by(WatchedObject.key)
            if prefix:
                query = query.where(WatchedObject.key.startswith(prefix, autoescape=True))
            return [
                to_record(WatchedObjectRecord, row, deleted=row.deleted_at is not None)
                for row in session.scalars(query)
            ]

        return self._read(work)

    def record_watched_objects(self, bucket: str, states: Iterable[SeenObject]) -> int:
        """Upsert what the watcher saw, by (bucket, key), in one transaction; returns the rows written.

        A concurrent watcher inserting the same key makes this transaction retry and update instead, so an
        object is never recorded twice. Recording a deletion of a key never seen is a no-op.
        """
        wanted = list(states)

        def work(session: Session) -> int:
            now = utcnow()
            written = 0
            for state in wanted:
                row = session.scalar(
                    select(WatchedObject).where(
                        WatchedObject.bucket == bucket, WatchedObject.key == state.key
                    )
                )
                if row is None:
                    if state.deleted:
                        continue
                    row = WatchedObject(bucket=bucket, key=state.key, first_seen=now)
                    session.add(row)
                row.etag = state.etag
                row.sha256 = state.sha256
                row.size = state.size
                row.last_seen = now
                row.deleted_at = now if state.deleted else None
                written += 1
            session.flush()
            return written

        return self._write(work)
