"""The declarative dataset spec: one YAML file says how a raw table becomes a registered dataset.

A spec names the source, the columns to keep, an ordered list of cleaning steps, the expectations the
result must meet and free-form training hints. Every problem is reported with the file, the line and the
field path (``bl_books.yaml line 14, steps[2].coerce.type: ...``) so it can be fixed without guessing.

``base`` holds the types, the error and the strict model every part uses; ``source`` the source and
columns sections; ``rules`` the cleaning rules and ``expectations`` the expectations, one model each;
``items`` the ``- name: {params}`` items of the steps and expectations lists; ``spec`` the whole spec
and its cross-section checks; ``loading`` the YAML parsing with line numbers.
"""

# Re-exported one name a line (``name as name``: the explicit re-export that mypy and readers recognise).
from ods.domain.dataset_spec.base import LOGICAL_TYPES as LOGICAL_TYPES
from ods.domain.dataset_spec.base import PII_KINDS as PII_KINDS
from ods.domain.dataset_spec.base import Bound as Bound
from ods.domain.dataset_spec.base import DatasetSpecError as DatasetSpecError
from ods.domain.dataset_spec.base import LogicalType as LogicalType
from ods.domain.dataset_spec.base import Path_ as Path_
from ods.domain.dataset_spec.base import PiiKind as PiiKind
from ods.domain.dataset_spec.base import Scalar as Scalar
from ods.domain.dataset_spec.base import SourceFormat as SourceFormat
from ods.domain.dataset_spec.base import format_path as format_path
from ods.domain.dataset_spec.expectations import BetweenExpectation as BetweenExpectation
from ods.domain.dataset_spec.expectations import ColumnTypeExpectation as ColumnTypeExpectation
from ods.domain.dataset_spec.expectations import ExpectationParams as ExpectationParams
from ods.domain.dataset_spec.expectations import InSetExpectation as InSetExpectation
from ods.domain.dataset_spec.expectations import NotNullExpectation as NotNullExpectation
from ods.domain.dataset_spec.expectations import RegexExpectation as RegexExpectation
from ods.domain.dataset_spec.expectations import RowCountExpectation as RowCountExpectation
from ods.domain.dataset_spec.expectations import UniqueExpectation as UniqueExpectation
from ods.domain.dataset_spec.expectations import expectation_type_problem as expectation_type_problem
from ods.domain.dataset_spec.items import EXPECTATION_NAMES as EXPECTATION_NAMES
from ods.domain.dataset_spec.items import RULE_NAMES as RULE_NAMES
from ods.domain.dataset_spec.items import Expectation as Expectation
from ods.domain.dataset_spec.items import Step as Step
from ods.domain.dataset_spec.loading import parse_dataset_spec as parse_dataset_spec
from ods.domain.dataset_spec.rules import CoerceRule as CoerceRule
from ods.domain.dataset_spec.rules import DeduplicateRule as DeduplicateRule
from ods.domain.dataset_spec.rules import DeriveRule as DeriveRule
from ods.domain.dataset_spec.rules import ExtractRule as ExtractRule
from ods.domain.dataset_spec.rules import FillNullsRule as FillNullsRule
from ods.domain.dataset_spec.rules import MapValuesRule as MapValuesRule
from ods.domain.dataset_spec.rules import MaskPiiRule as MaskPiiRule
from ods.domain.dataset_spec.rules import NormalizeRule as NormalizeRule
from ods.domain.dataset_spec.rules import Rule as Rule
from ods.domain.dataset_spec.source import ColumnsSpec as ColumnsSpec
from ods.domain.dataset_spec.source import SourceSpec as SourceSpec
from ods.domain.dataset_spec.spec import DatasetSpec as DatasetSpec

__all__ = [
    "EXPECTATION_NAMES",
    "LOGICAL_TYPES",
    "PII_KINDS",
    "RULE_NAMES",
    "BetweenExpectation",
    "Bound",
    "CoerceRule",
    "ColumnTypeExpectation",
    "ColumnsSpec",
    "DatasetSpec",
    "DatasetSpecError",
    "DeduplicateRule",
    "DeriveRule",
    "Expectation",
    "ExpectationParams",
    "ExtractRule",
    "FillNullsRule",
    "InSetExpectation",
    "LogicalType",
    "MapValuesRule",
    "MaskPiiRule",
    "NormalizeRule",
    "NotNullExpectation",
    "Path_",
    "PiiKind",
    "RegexExpectation",
    "RowCountExpectation",
    "Rule",
    "Scalar",
    "SourceFormat",
    "SourceSpec",
    "Step",
    "UniqueExpectation",
    "expectation_type_problem",
    "format_path",
    "parse_dataset_spec",
]
