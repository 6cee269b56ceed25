"""Datasets, their immutable versions (with lineage between versions) and their validation runs."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, true
from sqlalchemy.orm import Session, selectinload

from ods.adapters.catalog.base import (
    CatalogBase,
    VersionedTable,
    add_row,
    check_choice,
    require_rows,
    to_record,
)
from ods.adapters.catalog.records import DatasetRecord, DatasetVersionRecord, ValidationRunRecord
from ods.adapters.catalog.schema import Dataset, DatasetStatus, DatasetVersion, ValidationRun, utcnow
from ods.domain.names import check_name
from ods.errors import OdsError

TAG_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
TAG_RULE = "use 1-32 lower-case letters, digits, '_' or '-', starting with a letter or digit"
MAX_TAGS = 20


class InvalidTagError(OdsError, ValueError):
    """A dataset tag breaks the tag rule (``TAG_RULE``) or a dataset was given too many tags."""


def check_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """``tags`` without duplicates, sorted, if every one follows ``TAG_RULE`` and there are at most
    ``MAX_TAGS``; else :class:`InvalidTagError` naming the first bad tag and the rule."""
    unique = sorted(set(tags))
    for tag in unique:
        if not isinstance(tag, str) or TAG_PATTERN.fullmatch(tag) is None:
            shown = repr(tag) if not isinstance(tag, str) or len(tag) <= 40 else repr(tag[:37]) + "…"
            raise InvalidTagError(f"tag {shown} is not allowed: {TAG_RULE} (e.g. finance)")
    if len(unique) > MAX_TAGS:
        raise InvalidTagError(f"{len(unique)} tags given; a dataset keeps at most {MAX_TAGS}: drop some")
    return tuple(unique)


class DatasetTables(CatalogBase):
    """``datasets``, ``dataset_versions`` (+ ``dataset_version_parents``) and ``validation_runs``."""

    def ensure_dataset(
        self,
        name: str,
        description: str | None = None,
        *,
        tenant: str | None = None,
        owner: str | None = None,
    ) -> DatasetRecord:
        """The dataset called ``name``, created if missing (as ``tenant``'s, else the catalog's tenant's,
        owned by ``owner``); a given description replaces the stored one. An existing dataset keeps its
        tenant and owner; names are unique per tenant (migration 0015)."""
        return self._ensure(DATASETS, name, description, tenant, owner)

    def add_dataset_version(
        self,
        dataset_name: str,
        *,
        content_hash: str,
        uri: str,
        schema: dict[str, Any],
        profile: dict[str, Any],
        row_count: int,
        size_bytes: int,
        status: DatasetStatus,
        source_uri: str | None = None,
        source_etag: str | None = None,
        source_sha256: str | None = None,
        spec_hash: str | None = None,
        flow_run_id: str | None = None,
        parents: Iterable[int] = (),
        reason: str | None = None,
        description: str | None = None,
    ) -> DatasetVersionRecord:
        """Record a dataset version, numbered after the dataset's newest one.

        Idempotent by content: when ``content_hash`` is already recorded for the dataset, that version is
        returned unchanged, whatever its status. ``parents`` are ids of the versions it was derived from.
        """
        check_name("dataset", dataset_name)
        check_choice("dataset status", status, DatasetStatus)
        parent_ids = sorted(set(parents))

        def work(session: Session) -> DatasetVersionRecord:
            dataset = DATASETS.lock_owner(session, dataset_name, description, self.tenant, self.creator)
            existing = session.scalar(
                select(DatasetVersion).where(
                    DatasetVersion.dataset_id == dataset.id, DatasetVersion.content_hash == content_hash
                )
            )
            if existing is not None:
                return dataset_version_record(existing, dataset.name)
            parent_rows = require_rows(
                session, DatasetVersion, DatasetVersion.id, parent_ids, "dataset version"
            )
            row = DATASETS.add_version(
                session,
                dataset,
                content_hash=content_hash,
                uri=uri,
                schema=schema,
                profile=profile,
                row_count=row_count,
                size_bytes=size_bytes,
                status=status,
                reason=reason,
                source_uri=source_uri,
                source_etag=source_etag,
                source_sha256=source_sha256,
                spec_hash=spec_hash,
                flow_run_id=flow_run_id,
                parents=parent_rows,
            )
            return dataset_version_record(row, dataset.name)

        return self._write(work)

    def find_dataset_version(
        self, name: str, *, source_sha256: str, spec_hash: str
    ) -> DatasetVersionRecord | None:
        """The newest version of ``name`` made from these source bytes with this spec, if any."""

        def work(session: Session) -> DatasetVersionRecord | None:
            row = session.scalar(
                select(DatasetVersion)
                .join(Dataset)
                .where(
                    Dataset.name == name,
                    Dataset.tenant == self.tenant,
                    DatasetVersion.source_sha256 == source_sha256,
                    DatasetVersion.spec_hash == spec_hash,
                )
                .options(selectinload(DatasetVersion.parents))
                .order_by(DatasetVersion.version.desc())
                .limit(1)
            )
            return None if row is None else dataset_version_record(row, name)

        return self._read(work)

    def get_dataset_version(self, name: str, version: int | None = None) -> DatasetVersionRecord:
        """Version ``version`` of dataset ``name``, or its newest registered version when ``None``."""
        return self._read(lambda session: DATASETS.get_version(session, name, self.tenant, version))

    def list_datasets(
        self, *, tags: Sequence[str] = (), include_archived: bool = True, tenant: str | None = None
    ) -> list[DatasetRecord]:
        """Every dataset (of ``tenant`` when given), by name; with ``tags``, only those carrying all of
        them; archived ones only when ``include_archived`` (the default, so ``ods datasets list`` shows
        every dataset as before)."""
        wanted = set(tags)
        return [
            dataset
            for dataset in self._list_named(Dataset, _dataset_record, tenant)
            if wanted.issubset(dataset.tags) and (include_archived or dataset.archived_at is None)
        ]

    def dataset_bytes(self, tenant: str) -> int:
        """Bytes of the Parquet files of every version of ``tenant``'s datasets (its storage quota)."""
        query = (
            select(func.coalesce(func.sum(DatasetVersion.size_bytes), 0))
            .join(Dataset, DatasetVersion.dataset_id == Dataset.id)
            .where(Dataset.tenant == tenant)
        )
        return self._read(lambda session: int(session.scalar(query) or 0))

    def get_dataset(self, name: str) -> DatasetRecord:
        """The dataset called ``name`` (archived or not); NotFoundError listing the names there are."""
        return self._read(
            lambda session: _dataset_record(session, DATASETS.named(session, name, self.tenant))
        )

    def update_dataset(
        self,
        name: str,
        *,
        description: str | None = None,
        tags: Sequence[str] | None = None,
        clear_description: bool = False,
    ) -> DatasetRecord:
        """Replace the description and/or the tags of dataset ``name`` (``None`` keeps what is stored;
        ``clear_description`` empties it). Its versions never change: they are immutable."""
        checked = None if tags is None else check_tags(tags)

        def work(session: Session) -> DatasetRecord:
            dataset = DATASETS.named(session, name, self.tenant)
            if clear_description:
                dataset.description = None
            elif description is not None:
                dataset.description = description
            if checked is not None:
                dataset.tags = list(checked)
            session.flush()
            return _dataset_record(session, dataset)

        return self._write(work)

    def archive_dataset(self, name: str, *, now: datetime | None = None) -> DatasetRecord:
        """Hide dataset ``name`` from lists; its versions and their bytes stay. Archiving an archived
        dataset changes nothing (it keeps the first time)."""

        def work(session: Session) -> DatasetRecord:
            dataset = DATASETS.named(session, name, self.tenant)
            if dataset.archived_at is None:
                dataset.archived_at = now or utcnow()
                session.flush()
            return _dataset_record(session, dataset)

        return self._write(work)

    def restore_dataset(self, name: str) -> DatasetRecord:
        """Show an archived dataset ``name`` in lists again; restoring a live dataset changes nothing."""

        def work(session: Session) -> DatasetRecord:
            dataset = DATASETS.named(session, name, self.tenant)
            if dataset.archived_at is not None:
                dataset.archived_at = None
                session.flush()
            return _dataset_record(session, dataset)

        return self._write(work)

    def list_dataset_versions(self, name: str) -> list[DatasetVersionRecord]:
        """Every version of dataset ``name`` (registered and rejected), oldest first."""

        def work(session: Session) -> list[DatasetVersionRecord]:
            dataset = DATASETS.named(session, name, self.tenant)
            rows = session.scalars(
                select(DatasetVersion)
                .where(DatasetVersion.dataset_id == dataset.id)
                .options(selectinload(DatasetVersion.parents))
                .order_by(DatasetVersion.version)
            ).all()
            return [dataset_version_record(row, dataset.name) for row in rows]

        return self._read(work)

    def add_validation_run(
        self,
        dataset_version_id: int,
        *,
        success: bool,
        results: dict[str, Any],
        quarantine_uri: str | None = None,
    ) -> ValidationRunRecord:
        """Record the outcome of validating a dataset version."""

        def work(session: Session) -> ValidationRunRecord:
            require_rows(session, DatasetVersion, DatasetVersion.id, [dataset_version_id], "dataset version")
            row = ValidationRun(
                dataset_version_id=dataset_version_id,
                success=success,
                results=results,
                quarantine_uri=quarantine_uri,
            )
            return to_record(ValidationRunRecord, add_row(session, row))

        return self._write(work)

    def validation_runs(self, dataset_version_id: int) -> list[ValidationRunRecord]:
        """Every validation run of a dataset version, oldest first."""

        def work(session: Session) -> list[ValidationRunRecord]:
            rows = session.scalars(
                select(ValidationRun)
                .where(ValidationRun.dataset_version_id == dataset_version_id)
                .order_by(ValidationRun.id)
            )
            return [to_record(ValidationRunRecord, row) for row in rows]

        return self._read(work)

    def latest_registered_versions(self, *, tenant: str | None = None) -> list[DatasetVersionRecord]:
        """The newest registered version of every dataset (of ``tenant`` when given) that has one, by
        dataset name (Text-to-SQL)."""

        def work(session: Session) -> list[DatasetVersionRecord]:
            newest = (
                select(DatasetVersion.dataset_id, func.max(DatasetVersion.version).label("version"))
                .where(DatasetVersion.status == "registered")
                .group_by(DatasetVersion.dataset_id)
                .subquery()
            )
            rows = session.execute(
                select(DatasetVersion, Dataset.name)
                .join(
                    newest,
                    (DatasetVersion.dataset_id == newest.c.dataset_id)
                    & (DatasetVersion.version == newest.c.version),
                )
                .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
                .where(true() if tenant is None else Dataset.tenant == tenant)
                .options(selectinload(DatasetVersion.parents))
                .order_by(Dataset.name)
            ).all()
            return [dataset_version_record(row, name) for row, name in rows]

        return self._read(work)


def dataset_version_record(row: DatasetVersion, dataset_name: str) -> DatasetVersionRecord:
    """The frozen record of a dataset version row (its parents loaded in the same session)."""
    parent_ids = tuple(sorted(parent.id for parent in row.parents))
    return to_record(DatasetVersionRecord, row, dataset_name=dataset_name, parent_ids=parent_ids)


def _dataset_record(session: Session, dataset: Dataset) -> DatasetRecord:
    latest, count = session.execute(
        select(
            func.max(DatasetVersion.version).filter(DatasetVersion.status == "registered"),
            func.count(DatasetVersion.id),
        ).where(DatasetVersion.dataset_id == dataset.id)
    ).one()
    return to_record(
        DatasetRecord, dataset, latest_version=latest, version_count=count, tags=tuple(dataset.tags or ())
    )


DATASETS = VersionedTable(
    "dataset", Dataset, DatasetVersion, DatasetVersion.dataset_id, _dataset_record, dataset_version_record
)
