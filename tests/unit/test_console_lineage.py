"""The console's lineage layout: raw source → dataset versions → model versions → endpoints, one column each."""

from __future__ import annotations

from ods.api.console.lineage import COLUMN_WIDTH, MARGIN, lay_out_lineage

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
