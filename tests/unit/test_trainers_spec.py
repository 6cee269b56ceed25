"""Training requests: parameter validation, `--param` parsing, model names and the run identity."""

from __future__ import annotations

import pytest

from ods.domain.training_spec import (
    CausalLmParams,
    TabularParams,
    TrainingSpecError,
    check_model_name,
    check_trainer,
    parse_param_assignments,
    parse_trainer_params,
    resolved_params,
    training_key,
)


def test_parameters_get_defaults_and_types() -> None:
    params = parse_trainer_params("tabular", {"max_iter": 50, "exclude": ["order_id"]})

    assert isinstance(params, TabularParams)
    assert (params.max_iter, params.exclude, params.test_size) == (50, ("order_id",), 0.2)
    lm = parse_trainer_params("causal-lm-sft", {"method": "full"})
    assert isinstance(lm, CausalLmParams)
    assert lm.effective_learning_rate == 2e-5


@pytest.mark.parametrize(
    ("trainer", "params", "expected"),
    [
        ("tabular", {"max_iters": 5}, "unknown parameter 'max_iters' (known: "),
        ("tabular", {"test_size": 1.5}, "test_size=1.5: Input should be less than 1"),
        ("causal-lm-sft", {"method": "qlora"}, "method='qlora'"),
        ("causal-lm-sft", {"prompt_column": "text", "response_column": "text"}, "are both 'text'"),
        ("xgboost", {}, "unknown trainer 'xgboost'; use one of: tabular, causal-lm-sft"),
    ],
    ids=["typo", "out-of-range", "bad-choice", "same-columns", "unknown-trainer"],
)
def test_bad_parameters_are_named(trainer: str, params: dict[str, object], expected: str) -> None:
    with pytest.raises(TrainingSpecError) as raised:
        parse_trainer_params(trainer, params)

    assert expected in str(raised.value)


def test_param_assignments_are_typed_like_yaml_scalars() -> None:
    parsed = parse_param_assignments(
        [
            "max_iter=50",
            "learning_rate=2e-5",
            "early_stopping=false",
            "method=lora",
            "exclude=[a, b]",
            "x=null",
        ]
    )

    assert parsed == {
        "max_iter": 50,
        "learning_rate": 2e-5,
        "early_stopping": False,
        "method": "lora",
        "exclude": ["a", "b"],
        "x": None,
    }


@pytest.mark.parametrize("assignment", ["max_iter", "=5"])
def test_param_assignment_without_key_or_value_is_refused(assignment: str) -> None:
    with pytest.raises(TrainingSpecError, match="is not KEY=VALUE"):
        parse_param_assignments([assignment])


def test_model_names_must_fit_object_keys() -> None:
    assert check_model_name("sales_returns-v2") == "sales_returns-v2"
    assert check_trainer("tabular") == "tabular"
    with pytest.raises(TrainingSpecError, match="'Sales/Returns' is not allowed"):
        check_model_name("Sales/Returns")


def test_training_key_changes_with_data_params_or_code_only() -> None:
    resolved = resolved_params("tabular", TabularParams(), target="returned", base_model=None)
    key = training_key(
        model_name="sales", dataset_content_hash="abc", resolved=resolved, code_version="0.1.0"
    )

    assert "base_model" not in resolved
    assert key == training_key(
        model_name="sales",
        dataset_content_hash="abc",
        resolved=dict(reversed(resolved.items())),
        code_version="0.1.0",
    )
    changed = [
        training_key(model_name="sales", dataset_content_hash="abd", resolved=resolved, code_version="0.1.0"),
        training_key(
            model_name="sales",
            dataset_content_hash="abc",
            resolved={**resolved, "seed": 1},
            code_version="0.1.0",
        ),
        training_key(model_name="sales", dataset_content_hash="abc", resolved=resolved, code_version="0.1.1"),
        training_key(model_name="other", dataset_content_hash="abc", resolved=resolved, code_version="0.1.0"),
    ]
    assert key not in changed and len(set(changed)) == 4
