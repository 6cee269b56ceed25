"""The tabular trainer on tiny frames: task choice, feature plan, metrics, saving and safe loading."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ods.domain.training_spec import TabularParams
from ods.errors import OdsError
from ods.trainers.base import TrainingDataError
from ods.trainers.tabular import (
    MODEL_FILE,
    SCHEMA_FILE,
    TabularTrainer,
    build_features,
    choose_task,
    load_tabular_model,
    plan_features,
)


def _orders(rows: int = 300, seed: int = 0) -> pd.DataFrame:
    """Orders whose 'returned' flag follows region and quantity, so a model can learn it."""
    rng = np.random.default_rng(seed)
    region = rng.choice(["North", "South", "East"], rows)
    quantity = rng.integers(1, 50, rows)
    return pd.DataFrame(
        {
            "order_id": [f"o{i}" for i in range(rows)],
            "order_date": pd.array(
                [dt.date(2024, 1, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 365, rows)]
            ),
            "region": pd.array(region, dtype="string"),
            "quantity": pd.array(quantity, dtype="Int64"),
            "price": pd.array(rng.uniform(1, 100, rows).round(2), dtype="Float64"),
            "shop": "web",
            "returned": pd.array((region == "North") & (quantity > 20), dtype="boolean"),
        }
    )


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (pd.array([True, False, None], dtype="boolean"), "classification"),
        (pd.array(["a", "b", "a"], dtype="string"), "classification"),
        (pd.array([1, 2, 3, 1], dtype="Int64"), "classification"),
        (pd.array(range(100), dtype="Int64"), "regression"),
        (pd.array([1.5, 2.5, 3.0], dtype="Float64"), "regression"),
    ],
    ids=["bool", "text", "few-ints", "many-ints", "float"],
)
def test_task_follows_the_targets_type(values: pd.api.extensions.ExtensionArray, expected: str) -> None:
    assert choose_task(pd.Series(values)) == expected


def test_feature_plan_leaves_out_identifiers_and_constants_and_expands_dates() -> None:
    schema = plan_features(_orders(), "returned", TabularParams(max_categories=10))

    assert [(column.name, column.kind) for column in schema.columns] == [
        ("order_date", "date"),
        ("region", "categorical"),
        ("quantity", "numeric"),
        ("price", "numeric"),
    ]
    assert schema.dropped == {
        "order_id": "300 distinct values (identifier-like; max_categories=10)",
        "shop": "constant",
    }
    assert schema.columns[1].categories == ("East", "North", "South")
    assert schema.feature_names[:3] == ["order_date__days", "order_date__month", "order_date__weekday"]


def test_unknown_categories_become_missing_values() -> None:
    schema = plan_features(_orders(), "returned", TabularParams())
    frame = _orders(3).assign(region=["North", "Atlantis", None])

    features = build_features(frame, schema)

    assert features["region"].tolist()[0] == "North"
    assert features["region"].isna().tolist() == [False, True, True]


def test_missing_target_names_the_columns_that_exist() -> None:
    with pytest.raises(TrainingDataError) as raised:
        TabularTrainer(TabularParams(), "churned").train(_orders(), Path("unused"))

    assert "target column 'churned' is not in the dataset" in str(raised.value)
    assert "order_id, order_date, region, quantity, price, shop, returned" in str(raised.value)


def test_classifier_learns_saves_and_reloads_with_the_same_predictions(tmp_path: Path) -> None:
    frame = _orders()

    trained = TabularTrainer(TabularParams(max_iter=50), "returned").train(frame, tmp_path / "model")

    assert trained.format == "sklearn-skops"
    assert trained.metrics["accuracy"] >= 0.95
    assert trained.metrics["accuracy"] > trained.metrics["baseline_accuracy"]
    assert (trained.metrics["train_rows"], trained.metrics["test_rows"]) == (240, 60)
    assert trained.details["task"] == "classification"
    assert sorted(path.name for path in (tmp_path / "model").iterdir()) == [SCHEMA_FILE, MODEL_FILE]
    schema = json.loads((tmp_path / "model" / SCHEMA_FILE).read_text())
    assert schema["classes"] == [False, True]
    model = load_tabular_model(tmp_path / "model")
    probe = frame.head(20)
    assert model.predict(probe).tolist() == probe["returned"].astype(bool).tolist()


def test_same_data_and_seed_give_the_same_model(tmp_path: Path) -> None:
    params = TabularParams(max_iter=30, seed=3)
    first = TabularTrainer(params, "returned").train(_orders(), tmp_path / "a")
    second = TabularTrainer(params, "returned").train(_orders(), tmp_path / "b")

    assert first.metrics == second.metrics
    frame = _orders(50, seed=9)
    assert (
        load_tabular_model(tmp_path / "a").predict(frame).tolist()
        == load_tabular_model(tmp_path / "b").predict(frame).tolist()
    )


def test_regressor_reports_error_metrics_against_the_mean_baseline(tmp_path: Path) -> None:
    frame = _orders().assign(revenue=lambda f: f["quantity"].astype(float) * f["price"])

    trained = TabularTrainer(TabularParams(max_iter=100, exclude=("returned",)), "revenue").train(
        frame, tmp_path / "model"
    )

    assert trained.details["task"] == "regression"
    assert set(trained.metrics) >= {"rmse", "mae", "r2", "baseline_rmse"}
    assert trained.metrics["r2"] > 0.8
    assert trained.metrics["rmse"] < trained.metrics["baseline_rmse"]


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (_orders(8), "only 8 row(s) have a value in target 'returned'"),
        (_orders().assign(returned=True), "has a single value"),
    ],
    ids=["too-few-rows", "single-class"],
)
def test_data_a_model_cannot_learn_from_is_refused(
    frame: pd.DataFrame, expected: str, tmp_path: Path
) -> None:
    with pytest.raises(TrainingDataError, match=r"nothing to classify|needs at least") as raised:
        TabularTrainer(TabularParams(), "returned").train(frame, tmp_path)

    assert expected in str(raised.value)


def test_a_model_file_with_untrusted_types_is_not_loaded(tmp_path: Path) -> None:
    import skops.io
    from sklearn.preprocessing import FunctionTransformer

    good = TabularTrainer(TabularParams(max_iter=5), "returned").train(_orders(), tmp_path)
    skops.io.dump(FunctionTransformer(func=json.loads), good.directory / MODEL_FILE)

    with pytest.raises(OdsError, match=r"outside the trusted set \(json.loads\)"):
        load_tabular_model(good.directory)
