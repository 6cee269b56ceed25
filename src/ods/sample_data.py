"""A dirty sales table the project generates itself, with the spec that cleans it.

Used by `ods demo`, the flow tests and `benchmarks/prepare_dataset.py`: deterministic for a given size and
seed, with the faults real exports have (mixed date formats, stray spaces and case, 'n/a' numbers, blank
cells, personal data, exact duplicate rows).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

SALES_SPEC = """\
# Orders exported from a shop system: clean, mask personal data, validate, register.
name: sales
description: Orders with cleaned dates, amounts and regions; customer e-mail and phone masked
source:
  uri: sales.csv
columns:
  drop_empty: true
steps:
  - normalize: {columns: all, trim: true, collapse_spaces: true, empty_as_null: true}
  - normalize: {columns: [region, product], case: title}
  - coerce: {column: order_date, type: date, formats: ["%Y-%m-%d", "%d/%m/%Y"]}
  - coerce: {column: quantity, type: int}
  - coerce: {column: unit_price, type: float}
  - coerce: {column: discount, type: float}
  - fill_nulls: {column: discount, strategy: constant, value: 0.0}
  - map_values: {column: status, values: {shipped: delivered, DELIVERED: delivered}}
  - coerce: {column: returned, type: bool}
  - deduplicate: {keys: null}
  - derive: {column: revenue, expression: "quantity * unit_price * (1 - discount)"}
  - mask_pii: {columns: auto, policy: mask}
expectations:
  - not_null: {column: order_id}
  - unique: {column: order_id}
  - not_null: {column: order_date, mostly: 0.95}
  - between: {column: quantity, min: 1, max: 1000, mostly: 0.95}
  - in_set: {column: status, values: [delivered, cancelled, pending]}
  - regex: {column: region, pattern: '^[A-Z][a-z]+(?: [A-Z][a-z]+)?$'}
  - column_type: {column: order_date, type: date}
  - row_count: {min: 1}
train:
  trainer: tabular
  target: returned
"""

_REGIONS = np.array(["north", "South ", " east", "WEST", "central", "North  East"])
_PRODUCTS = np.array(["widget", "gadget", "gizmo", "doohickey", "sprocket", "flange", "bracket", "valve"])
_STATUSES = np.array(["delivered", "shipped", "DELIVERED", "cancelled", "pending"])


def generate_sales(rows: int = 1_000, *, seed: int = 7, duplicate_fraction: float = 0.02) -> pd.DataFrame:
    """A dirty sales frame of about ``rows`` rows (all text, as a CSV export would be)."""
    rng = np.random.default_rng(seed)
    unique_rows = max(1, int(rows * (1 - duplicate_fraction)))
    ids = np.arange(1, unique_rows + 1)
    days = rng.integers(0, 3 * 365, unique_rows)
    dates = pd.Timestamp("2023-01-01") + pd.to_timedelta(days, unit="D")
    iso = dates.strftime("%Y-%m-%d").to_numpy(dtype=object)
    european = dates.strftime("%d/%m/%Y").to_numpy(dtype=object)
    order_date = np.where(rng.random(unique_rows) < 0.3, european, iso)
    order_date[rng.random(unique_rows) < 0.01] = ""
    quantity = rng.integers(1, 50, unique_rows).astype(str).astype(object)
    quantity[rng.random(unique_rows) < 0.005] = "n/a"
    price = np.round(rng.uniform(1, 500, unique_rows), 2).astype(str).astype(object)
    discount = np.round(rng.choice([0.0, 0.05, 0.1, 0.2], unique_rows), 2).astype(str).astype(object)
    discount[rng.random(unique_rows) < 0.1] = ""
    customer = rng.integers(1, max(2, unique_rows // 3), unique_rows)
    email = np.char.add(np.char.add("customer", customer.astype(str)), "@example.com").astype(object)
    phone = np.char.add("+44 7700 9", np.char.zfill(customer.astype(str), 5)).astype(object)
    frame = pd.DataFrame(
        {
            "order_id": ids.astype(str),
            "order_date": order_date,
            "customer_email": email,
            "customer_phone": phone,
            "region": _REGIONS[rng.integers(0, len(_REGIONS), unique_rows)],
            "product": _PRODUCTS[rng.integers(0, len(_PRODUCTS), unique_rows)],
            "quantity": quantity,
            "unit_price": price,
            "discount": discount,
            "status": _STATUSES[rng.integers(0, len(_STATUSES), unique_rows)],
            "returned": np.where(rng.random(unique_rows) < 0.1, "yes", "no"),
        }
    )
    duplicates = frame.iloc[rng.integers(0, unique_rows, rows - unique_rows)]
    return pd.concat([frame, duplicates], ignore_index=True)


def write_sales_example(directory: Path, rows: int = 1_000, *, seed: int = 7) -> tuple[Path, Path]:
    """Write ``sales.csv`` and ``sales.yaml`` into ``directory``; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    csv_path = directory / "sales.csv"
    spec_path = directory / "sales.yaml"
    generate_sales(rows, seed=seed).to_csv(csv_path, index=False)
    spec_path.write_text(SALES_SPEC, encoding="utf-8")
    return csv_path, spec_path


POLICY_DOCUMENTS = {
    "returns-policy.md": """# Returns policy

Customers may return any product within 30 days of delivery for a full refund. Items must be unused
and in their original packaging. Refunds are paid to the original payment method within five working days.

## Exceptions

Sprockets and flanges cut to measure cannot be returned unless they are faulty.
""",
    "shipping.md": """# Shipping

Orders placed before 2 pm ship the same day from the Leeds warehouse. Standard delivery takes two to
four working days in the United Kingdom; express delivery arrives the next working day.
""",
    "warranty.html": """<html><head><title>Warranty</title><script>track()</script></head><body>
<h1>Warranty</h1><p>Every gadget and gizmo carries a two year warranty against manufacturing defects.</p>
<h2>Claims</h2><p>Send the order number and a photo of the defect to support. We repair or replace the item.</p>
</body></html>""",
    "regions.txt": """Sales regions

The North and North East regions are served from Leeds. The South and Central regions are served from
Reading. West customers are served from Bristol since 2024.
""",
}


def write_policy_documents(directory: Path) -> Path:
    """Write a few shop policy documents (Markdown, HTML, text) into ``directory``; return it."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in POLICY_DOCUMENTS.items():
        (directory / name).write_text(text, encoding="utf-8")
    return directory
