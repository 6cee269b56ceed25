"""The ``tabular`` trainer: scikit-learn HistGradientBoosting on a registered table.

Classification or regression is chosen from the target's type (booleans, text and integers with few
distinct values are classes; other numbers are regressed). Features are planned from the frame: numbers
and booleans as they are, dates as (days since 1970, month, weekday), text with few distinct values as
native categoricals; text with many distinct values (ids, masked e-mails) is left out and the reason
recorded. The plan is saved as ``feature_schema.json`` next to the estimator, so prediction rebuilds the
same features (fixed categories, unknown values as missing) from a raw frame.

The estimator is saved with skops (``model.skops``), not pickle/joblib: a skops file is loaded only when
every type it holds is on an allow-list, so a model file taken from shared storage cannot run code on
load. The allow-list is the three helper types HistGradientBoosting needs besides plain sklearn/numpy.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from ods.domain.training_spec import TabularParams
from ods.errors import OdsError
from ods.trainers.base import TrainedModel, TrainingDataError, describe_columns

MODEL_FILE = "model.skops"
SCHEMA_FILE = "feature_schema.json"
FORMAT = "sklearn-skops"
MIN_ROWS = 10
SINGLE_THREAD_ROWS = 50_000
"""Below this many rows one OpenMP thread is faster than several competing for a shared CPU."""
MAX_INTEGER_CLASSES = 20
"""An integer target with at most this many distinct values is treated as class labels."""
TRUSTED_SKOPS_TYPES = (
    "functools.partial",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.utils.validation.check_array",
)
_DATE_PARTS = ("days", "month", "weekday")

Task = Literal["classification", "regression"]
FeatureKind = Literal["numeric", "categorical", "date"]


@dataclass(frozen=True)
class FeatureColumn:
    """One input column and how it becomes model features."""

    name: str
    kind: FeatureKind
    categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class FeatureSchema:
    """Everything needed to turn a raw frame into the model's features, and to read its predictions."""

    target: str
    task: Task
    columns: tuple[FeatureColumn, ...]
    dropped: dict[str, str] = field(default_factory=dict)
    classes: tuple[Any, ...] = ()

    @property
    def feature_names(self) -> list[str]:
        """The model's feature names, in order (a date column gives three)."""
        names: list[str] = []
        for column in self.columns:
            if column.kind == "date":
                names += [f"{column.name}__{part}" for part in _DATE_PARTS]
            else:
                names.append(column.name)
        return names

    def to_json(self) -> str:
        """The schema as JSON (written as ``feature_schema.json``)."""
        data = asdict(self)
        data["feature_names"] = self.feature_names
        return json.dumps(data, indent=2, ensure_ascii=False, default=str)

    @classmethod
    def from_json(cls, text: str) -> FeatureSchema:
        """The schema read back from :meth:`to_json`."""
        data = json.loads(text)
        return cls(
            target=data["target"],
            task=data["task"],
            columns=tuple(
                FeatureColumn(item["name"], item["kind"], tuple(item["categories"]))
                for item in data["columns"]
            ),
            dropped=dict(data.get("dropped", {})),
            classes=tuple(data.get("classes", ())),
        )


def _is_date(series: pd.Series) -> bool:
    dtype = series.dtype
    if isinstance(dtype, pd.ArrowDtype):
        arrow = dtype.pyarrow_dtype
        return bool(pa.types.is_date(arrow) or pa.types.is_timestamp(arrow))
    if pd.api.types.is_object_dtype(dtype):
        return pd.api.types.infer_dtype(series, skipna=True) in ("date", "datetime", "datetime64")
    return bool(pd.api.types.is_datetime64_any_dtype(dtype))


def _is_numeric(series: pd.Series) -> bool:
    return bool(pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_numeric_dtype(series.dtype))


def choose_task(target: pd.Series, requested: str = "auto") -> Task:
    """Classification for booleans, text and integers with few distinct values; regression otherwise."""
    if requested in ("classification", "regression"):
        return requested  # type: ignore[return-value]
    values = target.dropna()
    if pd.api.types.is_bool_dtype(target.dtype) or not _is_numeric(target):
        return "classification"
    if pd.api.types.is_integer_dtype(target.dtype) and values.nunique() <= MAX_INTEGER_CLASSES:
        return "classification"
    return "regression"


def plan_features(frame: pd.DataFrame, target: str, params: TabularParams) -> FeatureSchema:
    """Decide which columns feed the model and how; the ones left out are named with the reason."""
    if target not in frame.columns:
        raise TrainingDataError(
            f"target column {target!r} is not in the dataset; its columns are: {describe_columns(frame)}"
        )
    unknown = [name for name in params.exclude if name not in frame.columns]
    if unknown:
        raise TrainingDataError(
            f"exclude names {', '.join(map(repr, unknown))}, not in the dataset; "
            f"its columns are: {describe_columns(frame)}"
        )
    task = choose_task(frame[target], params.task)
    columns: list[FeatureColumn] = []
    dropped: dict[str, str] = {}
    for name in frame.columns:
        if name == target:
            continue
        series = frame[name]
        distinct = int(series.nunique(dropna=True))
        if name in params.exclude:
            dropped[name] = "excluded by parameter"
        elif distinct == 0:
            dropped[name] = "no values"
        elif distinct == 1:
            dropped[name] = "constant"
        elif _is_date(series):
            columns.append(FeatureColumn(name, "date"))
        elif _is_numeric(series):
            columns.append(FeatureColumn(name, "numeric"))
        elif distinct > params.max_categories:
            dropped[name] = (
                f"{distinct} distinct values (identifier-like; max_categories={params.max_categories})"
            )
        else:
            categories = tuple(sorted(series.dropna().astype(str).unique()))
            columns.append(FeatureColumn(name, "categorical", categories))
    if not columns:
        raise TrainingDataError(
            f"no usable feature column besides target {target!r}; left out: "
            + "; ".join(f"{name} ({why})" for name, why in dropped.items())
        )
    return FeatureSchema(target=target, task=task, columns=tuple(columns), dropped=dropped)


def build_features(frame: pd.DataFrame, schema: FeatureSchema) -> pd.DataFrame:
    """The model's input frame: float numbers, date parts, and categoricals with the training categories.

    A value never seen in training becomes missing, which the booster handles like a gap in the data.
    """
    missing = [column.name for column in schema.columns if column.name not in frame.columns]
    if missing:
        raise TrainingDataError(
            f"the frame lacks feature column(s) {', '.join(missing)}; it has: {describe_columns(frame)}"
        )
    features: dict[str, Any] = {}
    for column in schema.columns:
        series = frame[column.name]
        if column.kind == "numeric":
            features[column.name] = pd.to_numeric(series.astype("object"), errors="coerce").astype("float64")
        elif column.kind == "date":
            moments = pd.to_datetime(series.astype("object"), errors="coerce")
            epoch_days = (moments - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1)
            features[f"{column.name}__days"] = epoch_days.astype("float64")
            features[f"{column.name}__month"] = moments.dt.month.astype("float64")
            features[f"{column.name}__weekday"] = moments.dt.day_of_week.astype("float64")
        else:
            known = set(column.categories)
            values = [None if pd.isna(value) or str(value) not in known else str(value) for value in series]
            features[column.name] = pd.Categorical(values, categories=list(column.categories))
    return pd.DataFrame(features, index=frame.index)


def _labels(target: pd.Series, task: Task) -> np.ndarray:
    if task == "regression":
        return np.asarray(pd.to_numeric(target.astype("object"), errors="coerce"), dtype="float64")
    if pd.api.types.is_bool_dtype(target.dtype):
        return np.asarray(target.astype(bool), dtype=bool)
    if pd.api.types.is_integer_dtype(target.dtype):
        return np.asarray(target.astype("int64"), dtype="int64")
    return np.asarray(target.astype(str), dtype=object)


def _split(
    frame: pd.DataFrame, labels: np.ndarray, task: Task, params: TabularParams
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    stratify = None
    if task == "classification":
        _, counts = np.unique(labels, return_counts=True)
        test_rows = int(np.ceil(len(labels) * params.test_size))
        if counts.min() >= 2 and test_rows >= len(counts):
            stratify = labels
    x_train, x_test, y_train, y_test = train_test_split(
        frame, labels, test_size=params.test_size, random_state=params.seed, stratify=stratify
    )
    return x_train, x_test, y_train, y_test


def _estimator(task: Task, params: TabularParams) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    options = {
        "learning_rate": params.learning_rate,
        "max_iter": params.max_iter,
        "max_leaf_nodes": params.max_leaf_nodes,
        "max_depth": params.max_depth,
        "l2_regularization": params.l2_regularization,
        "early_stopping": params.early_stopping,
        "categorical_features": "from_dtype",
        "random_state": params.seed,
    }
    if task == "classification":
        return HistGradientBoostingClassifier(**options)
    return HistGradientBoostingRegressor(**options)


def evaluate(task: Task, y_true: np.ndarray, y_pred: np.ndarray, y_train: np.ndarray) -> dict[str, float]:
    """Held-out metrics, with the score of the trivial model (majority class or training mean) beside them."""
    from sklearn import metrics

    if task == "classification":
        values, counts = np.unique(y_train, return_counts=True)
        majority = values[int(np.argmax(counts))]
        return {
            "accuracy": float(metrics.accuracy_score(y_true, y_pred)),
            "balanced_accuracy": float(metrics.balanced_accuracy_score(y_true, y_pred)),
            "f1_macro": float(metrics.f1_score(y_true, y_pred, average="macro", zero_division=0)),
            "baseline_accuracy": float(np.mean(y_true == majority)),
        }
    baseline = np.full_like(y_true, float(np.mean(y_train)))
    return {
        "rmse": float(np.sqrt(metrics.mean_squared_error(y_true, y_pred))),
        "mae": float(metrics.mean_absolute_error(y_true, y_pred)),
        "r2": float(metrics.r2_score(y_true, y_pred)),
        "baseline_rmse": float(np.sqrt(metrics.mean_squared_error(y_true, baseline))),
    }


class TabularTrainer:
    """HistGradientBoosting on one target column of a frame."""

    name = "tabular"

    def __init__(self, params: TabularParams, target: str) -> None:
        self._params = params
        self._target = target

    def train(self, frame: pd.DataFrame, output_dir: Path) -> TrainedModel:
        """Fit on the seeded training split, score the held-out split, write model + feature schema."""
        import skops.io
        from threadpoolctl import threadpool_limits

        schema = plan_features(frame, self._target, self._params)
        labelled = frame[frame[self._target].notna()]
        if len(labelled) < MIN_ROWS:
            raise TrainingDataError(
                f"only {len(labelled)} row(s) have a value in target {self._target!r}; "
                f"the tabular trainer needs at least {MIN_ROWS}"
            )
        labels = _labels(labelled[self._target], schema.task)
        if schema.task == "classification" and len(np.unique(labels)) < 2:
            raise TrainingDataError(
                f"target {self._target!r} has a single value ({labels[0]!r}); there is nothing to classify"
            )
        x_train, x_test, y_train, y_test = _split(labelled, labels, schema.task, self._params)
        estimator = _estimator(schema.task, self._params)
        with threadpool_limits(limits=1 if len(labelled) < SINGLE_THREAD_ROWS else None, user_api="openmp"):
            estimator.fit(build_features(x_train, schema), y_train)
            predictions = estimator.predict(build_features(x_test, schema))
        metrics: dict[str, float | int] = {
            **evaluate(schema.task, y_test, predictions, y_train),
            "train_rows": len(x_train),
            "test_rows": len(x_test),
        }
        if schema.task == "classification":
            schema = FeatureSchema(
                target=schema.target,
                task=schema.task,
                columns=schema.columns,
                dropped=schema.dropped,
                classes=tuple(
                    value.item() if hasattr(value, "item") else value for value in estimator.classes_
                ),
            )
        output_dir.mkdir(parents=True, exist_ok=True)
        skops.io.dump(estimator, output_dir / MODEL_FILE)
        (output_dir / SCHEMA_FILE).write_text(schema.to_json(), encoding="utf-8")
        return TrainedModel(
            directory=output_dir,
            format=FORMAT,
            metrics=metrics,
            details={
                "task": schema.task,
                "features": ", ".join(schema.feature_names),
                "left out": "; ".join(f"{name} ({why})" for name, why in schema.dropped.items()) or None,
                "classes": ", ".join(map(str, schema.classes)) or None,
                "iterations": int(estimator.n_iter_),
            },
        )


@dataclass(frozen=True)
class TabularModel:
    """A trained tabular model read back from its folder: predicts from raw frames."""

    estimator: Any
    schema: FeatureSchema

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Predictions for each row of ``frame`` (which holds at least the feature columns)."""
        return np.asarray(self.estimator.predict(build_features(frame, self.schema)))


def load_tabular_model(directory: Path) -> TabularModel:
    """Read ``model.skops`` and ``feature_schema.json`` from ``directory``, refusing untrusted types."""
    import skops.io

    model_path = directory / MODEL_FILE
    if not model_path.is_file() or not (directory / SCHEMA_FILE).is_file():
        raise OdsError(f"{directory} holds no tabular model ({MODEL_FILE} and {SCHEMA_FILE} expected)")
    untrusted = [
        name for name in skops.io.get_untrusted_types(file=model_path) if name not in TRUSTED_SKOPS_TYPES
    ]
    if untrusted:
        raise OdsError(
            f"{model_path} holds types outside the trusted set ({', '.join(untrusted)}); "
            "it was not written by the tabular trainer: refusing to load it"
        )
    estimator = skops.io.load(model_path, trusted=list(TRUSTED_SKOPS_TYPES))
    schema = FeatureSchema.from_json((directory / SCHEMA_FILE).read_text(encoding="utf-8"))
    return TabularModel(estimator=estimator, schema=schema)
