"""Large values handed from one prepare stage to the next are released by the stage that takes them."""

from __future__ import annotations

import pytest

from ods.errors import OdsError
from ods.stages.prepare import Handover, SourceData


def test_a_handover_gives_its_value_once() -> None:
    handover = Handover(b"raw bytes")

    assert handover.peek() == b"raw bytes"
    assert handover.take() == b"raw bytes"
    with pytest.raises(OdsError, match="already handed to the next stage"):
        handover.take()


def test_source_data_keeps_its_identity_after_the_bytes_are_taken() -> None:
    source = SourceData(
        uri="file:///t.csv", name="t.csv", sha256="ab" * 32, etag=None, payload=Handover(b"a,b\n1,2\n")
    )

    assert source.take_data() == b"a,b\n1,2\n"
    assert (source.uri, source.name, source.sha256) == ("file:///t.csv", "t.csv", "ab" * 32)
    with pytest.raises(OdsError):
        source.data  # noqa: B018 - the property raises
