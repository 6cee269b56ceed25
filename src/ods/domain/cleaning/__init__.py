"""Cleaning rules: one pure function per rule of the dataset spec, and :func:`apply_cleaning` to run a spec.

Every function takes a DataFrame and returns a new one with a :class:`RuleReport` that counts what it
did; inputs are never modified. Values a rule cannot interpret become null and are counted (with
examples), never dropped silently. Text work runs once per distinct value, so repetitive columns are
cheap however long they are.

One module per family of rules: ``columns`` (select, rename, drop), ``text`` (normalize, extract),
``coercion`` (coerce), ``replacing`` (map_values, fill_nulls), ``deduplicate``, ``derive``, ``masking``
(mask_pii) and ``runner`` (a spec's steps in order); ``report``, ``frames``, ``distinct`` and
``arrow_text`` hold what the rules share.
"""

from ods.domain.cleaning.coercion import FALSE_TOKENS, TRUE_TOKENS, coerce_column
from ods.domain.cleaning.columns import prepare_columns
from ods.domain.cleaning.deduplicate import deduplicate_rows, normalize_key
from ods.domain.cleaning.derive import derive_column
from ods.domain.cleaning.frames import TEXT_DTYPE
from ods.domain.cleaning.masking import mask_pii
from ods.domain.cleaning.replacing import fill_nulls, map_values
from ods.domain.cleaning.report import MAX_EXAMPLE_CHARS, MAX_EXAMPLES, CleaningResult, RuleReport
from ods.domain.cleaning.runner import apply_cleaning
from ods.domain.cleaning.text import extract_pattern, normalize_text

__all__ = [
    "FALSE_TOKENS",
    "MAX_EXAMPLES",
    "MAX_EXAMPLE_CHARS",
    "TEXT_DTYPE",
    "TRUE_TOKENS",
    "CleaningResult",
    "RuleReport",
    "apply_cleaning",
    "coerce_column",
    "deduplicate_rows",
    "derive_column",
    "extract_pattern",
    "fill_nulls",
    "map_values",
    "mask_pii",
    "normalize_key",
    "normalize_text",
    "prepare_columns",
]
