"""The console's lineage layouts, one column per stage: a dataset's (raw source → dataset versions → model
versions → endpoints) and a knowledge base's (documents → cited chunks → conversations)."""

from __future__ import annotations

from ods.api.console.lineage import COLUMN_WIDTH, MARGIN, lay_out_kb_lineage, lay_out_lineage

DATASET = {
    "name": "sales",
    "versions": [
        {
            "id": 7,
            "version": 2,
            "status": "registered",
            "lineage": {"source_uri": "s3://raw/sales.csv", "parent_version_ids": [3]},
        },
        {
            "id": 3,
            "version": 1,
            "status": "rejected",
            "lineage": {"source_uri": "s3://raw/sales.csv", "parent_version_ids": []},
        },
    ],
}
MODELS = [
    {
        "name": "churn",
        "versions": [
            {"version": 1, "trainer": "tabular", "trained_on": {"dataset": "sales", "dataset_version_id": 7}},
            {
                "version": 2,
                "trainer": "tabular",
                "trained_on": {"dataset": "other", "dataset_version_id": 99},
            },
        ],
        "endpoints": [{"id": 4, "model_version": 1, "backend": "transformers", "status": "active"}],
    }
]


def test_each_stage_is_a_column_and_each_link_an_edge() -> None:
    graph = lay_out_lineage(DATASET, MODELS)
    by_key = {node.key: node for node in graph.nodes}

    assert set(by_key) == {"source:0", "dataset:3", "dataset:7", "model:churn:1", "endpoint:4"}
    assert [by_key[key].x for key in ("source:0", "dataset:3", "model:churn:1", "endpoint:4")] == [
        MARGIN + column * COLUMN_WIDTH for column in range(4)
    ]
    assert by_key["dataset:3"].y < by_key["dataset:7"].y  # versions oldest first
    assert by_key["source:0"].title == "s3://raw/sales.csv" and by_key["source:0"].label == "sales.csv"
    assert by_key["dataset:7"].href == "/console/datasets/sales?version=2"
    # source → both versions, version 1 → version 2 (its parent), version 2 → the model, the model → endpoint
    assert len(graph.edges) == 5
    assert all(edge.path.startswith("M") for edge in graph.edges)
    assert graph.width > 3 * COLUMN_WIDTH and graph.height >= 2 * 44


def test_a_dataset_nothing_was_trained_on_has_no_model_column_entries() -> None:
    graph = lay_out_lineage({"name": "empty", "versions": []}, MODELS)
    assert graph.nodes == [] and graph.edges == [] and graph.height > 0


def _citation(
    conversation: str, message: int, marker: int, document: int, chunk: str | None
) -> dict[str, object]:
    return {
        "conversation_id": conversation,
        "conversation_title": f"Question of {conversation}, asked at some length",
        "message_id": message,
        "marker": marker,
        "document_id": document,
        "document_uri": f"file:///docs/doc{document}.md",
        "document_version_id": 10 + document,
        "chunk_id": chunk,
        "chunk_index": None if chunk is None else 3,
        "page": None if chunk is None else 2,
        "heading": None if chunk is None else "Returns",
    }


def test_a_knowledge_base_lineage_links_documents_cited_chunks_and_conversations() -> None:
    lineage = {
        "knowledge_base": "policies",
        "documents": [
            {"id": 1, "uri": "file:///docs/doc1.md", "status": "indexed", "chunk_count": 4},
            {"id": 2, "uri": "file:///docs/doc2.md", "status": "indexed", "chunk_count": 1},
            {"id": 3, "uri": "file:///docs/never-cited.md", "status": "indexed", "chunk_count": 2},
        ],
        "citations": [
            _citation("a", 5, 1, 1, "c1"),
            _citation("a", 7, 1, 1, "c1"),  # a follow-up cites the same chunk: one node, one edge
            _citation("b", 9, 1, 1, "c1"),
            _citation("b", 9, 2, 2, None),  # its chunk left the catalog: hangs on the document version
        ],
    }
    graph = lay_out_kb_lineage(lineage)
    by_key = {node.key: node for node in graph.nodes}

    assert [node.kind for node in graph.nodes].count("document") == 3
    assert by_key["chunk:c1"].label == "chunk #3" and by_key["chunk:c1"].detail == "page 2 · Returns"
    assert by_key["version:12"].detail == "chunk no longer kept"
    assert by_key["conversation:a"].detail == "2 answers citing"
    assert by_key["conversation:b"].detail == "1 answer citing"
    assert (
        by_key["conversation:a"].label.endswith("…") and by_key["conversation:a"].href == "/console/chat?c=a"
    )
    assert {node.x for node in graph.nodes} == {MARGIN, MARGIN + COLUMN_WIDTH, MARGIN + 2 * COLUMN_WIDTH}
    assert len(graph.edges) == 5  # doc1→c1, c1→a, c1→b, doc2→version, version→b


def test_a_knowledge_base_nobody_cited_draws_its_documents_alone() -> None:
    graph = lay_out_kb_lineage(
        {
            "knowledge_base": "kb",
            "documents": [{"id": 1, "uri": "a.md", "status": "quarantined", "chunk_count": 0}],
            "citations": [],
        }
    )
    assert [node.label for node in graph.nodes] == ["a.md"] and graph.edges == []
    assert graph.nodes[0].detail == "quarantined, 0 chunks"
