"""Example data the project generates itself: a dirty sales table with its spec, and documents.

The sales table is used by `ods demo`, the flow tests and `benchmarks/prepare_dataset.py`: deterministic for
a given size and seed, with the faults real exports have (mixed date formats, stray spaces and case, 'n/a'
numbers, blank cells, personal data, exact duplicate rows). The handbook documents come with labelled
questions for measuring retrieval quality (`tests/integration/test_retrieval_quality.py`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ods.domain.retrieval_metrics import LabelledQuestion

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
    discount_rate = np.round(rng.choice([0.0, 0.05, 0.1, 0.2], unique_rows), 2)
    discount = discount_rate.astype(str).astype(object)
    discount[rng.random(unique_rows) < 0.1] = ""
    customer = rng.integers(1, max(2, unique_rows // 3), unique_rows)
    email = np.char.add(np.char.add("customer", customer.astype(str)), "@example.com").astype(object)
    phone = np.char.add("+44 7700 9", np.char.zfill(customer.astype(str), 5)).astype(object)
    region = _REGIONS[rng.integers(0, len(_REGIONS), unique_rows)]
    product = _PRODUCTS[rng.integers(0, len(_PRODUCTS), unique_rows)]
    status = _STATUSES[rng.integers(0, len(_STATUSES), unique_rows)]
    # Returns follow the product and the discount (gizmos and valves come back, deep discounts too), so a
    # model trained on the cleaned table has something real to learn.
    return_rate = 0.02 + 0.7 * np.isin(product, ("gizmo", "valve")) + 0.2 * (discount_rate >= 0.2)
    frame = pd.DataFrame(
        {
            "order_id": ids.astype(str),
            "order_date": order_date,
            "customer_email": email,
            "customer_phone": phone,
            "region": region,
            "product": product,
            "quantity": quantity,
            "unit_price": price,
            "discount": discount,
            "status": status,
            "returned": np.where(rng.random(unique_rows) < return_rate, "yes", "no"),
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


# --- A staff and customer handbook with labelled questions, for measuring retrieval quality -------------

HANDBOOK_DOCUMENTS = {
    "returns.md": """# Returns and refunds

Customers can send back any unused item within 30 days of delivery. The item must be in its original
packaging with all accessories. We email a prepaid return label on request.

## Refunds

Once the warehouse has inspected the parcel, the money goes back to the card or account used for the
purchase within five working days. Delivery charges are refunded only when the item was faulty.

## Items we cannot take back

Made-to-measure parts, opened software and gift cards are final sale unless they arrive damaged.
""",
    "shipping.md": """# Delivery

Orders confirmed before 2 pm leave the Leeds warehouse on the same working day. Standard delivery within
the United Kingdom takes two to four working days and is free above £50; express delivery arrives the next
working day for £7.95.

## International orders

We deliver to the European Union, Norway and Switzerland in five to eight working days. Import duties and
local taxes are collected by the courier from the recipient. Tracking numbers are sent by email when the
parcel leaves the warehouse.
""",
    "warranty.html": """<html><head><title>Warranty and repairs</title></head><body>
<h1>Warranty and repairs</h1>
<p>Every gadget and gizmo we sell is guaranteed for two years against manufacturing defects. The guarantee
does not cover wear and tear, accidental drops or water damage.</p>
<h2>Making a claim</h2>
<p>Write to support with the order number and a photo of the defect. A technician decides within three working
days whether the unit is repaired, replaced or, when neither is possible, refunded.</p>
</body></html>""",
    "discounts.md": """# Discounts and loyalty points

Members of the loyalty scheme earn one point for every pound spent; 100 points can be redeemed as a £5
voucher at checkout. Points expire after 18 months without a purchase.

## Promotional codes

Only one promotional code can be applied per order and codes cannot be combined with staff pricing.
Students and charities receive 10 percent off on presentation of a valid card or registration number.
""",
    "data-retention.md": """# Data retention

Customer order records are kept for six years after the end of the financial year, as tax law requires.
Marketing consent and newsletter preferences are deleted two years after a customer's last interaction.

## Erasure requests

Anyone can ask us to erase their personal data. The privacy team must answer within one calendar month and
records that the law obliges us to keep are restricted rather than deleted. CCTV footage is overwritten after
31 days unless it is needed for an investigation.
""",
    "travel-expenses.md": """# Travel and expenses

Business journeys must be booked through the travel portal. Rail travel is standard class; flights are
economy unless the flight lasts more than six hours.

## Claiming costs back

Submit receipts in the finance system within 60 days of the trip. Hotel stays are reimbursed up to £150 per
night in London and £110 elsewhere, and meals up to £35 per day. Mileage in a private car is paid at 45p per
mile for the first 10,000 miles of the tax year.
""",
    "security-incidents.md": """# Security incidents

If you suspect a breach — a phishing email you clicked, a lost laptop, a stolen badge or data sent to the
wrong recipient — call the security desk on extension 4444 at once, day or night. Do not try to investigate
or clean the device yourself.

## What happens next

The on-call analyst opens an incident ticket, isolates affected accounts and decides within 72 hours whether
the regulator must be notified. A short review of lessons learned follows every serious incident.
""",
    "remote-work.md": """# Working from home

Staff may work remotely up to three days a week with their manager's agreement. Core hours are 10 am to
3 pm, when you are expected to be reachable on chat and video calls.

## Equipment

The company provides a laptop, a monitor and a headset. A one-off allowance of £200 covers a desk chair or
other furniture. Company devices must only be used on a secured home network, never on public Wi-Fi
without the VPN.
""",
    "annual-leave.md": """# Annual leave

Full-time employees are entitled to 25 days of paid holiday per year plus public holidays. Requests go to
your line manager at least two weeks before the first day off.

## Carrying days over

Up to five unused days can be carried into the next leave year and must be taken by the end of March.
Unused leave beyond that is lost, except when sickness or parental leave prevented you from taking it.
""",
    "onboarding.txt": """New starter onboarding

On the first morning a buddy from your team meets you at reception, hands over your badge and laptop and
walks you through the building. During the first week you complete the mandatory training modules on data
protection, fire safety and the code of conduct.

Probation lasts six months. Your manager holds check-in meetings at the end of the first, third and sixth
month and confirms your permanent contract in writing.
""",
    "passwords.md": """# Passwords and accounts

Passwords for company systems must be at least 14 characters long. Use the company password manager to
generate and store them, and never reuse a password from a personal account.

## Multi-factor authentication

Every account must have a second factor enrolled: the authenticator app, or a hardware key for
administrators. Accounts unused for 90 days are disabled automatically and can be restored by the service
desk.
""",
    "procurement.html": """<html><head><title>Purchasing</title></head><body>
<h1>Purchasing and suppliers</h1>
<p>Any purchase above £5,000 needs three written quotes and the approval of the budget holder. Above £50,000
the procurement committee must sign off before an order is placed.</p>
<h2>New suppliers</h2>
<p>A new vendor is added to the approved list only after a credit check and a signed code of conduct.
Invoices are paid 30 days after they are received.</p>
</body></html>""",
    "health-safety.md": """# Health and safety at work

Report every accident or near miss in the safety log before the end of your shift, even when nobody was
hurt. First aiders are listed on the noticeboard next to each lift.

## Fire alarms

The alarm is tested every Tuesday at 11 am. When it sounds at any other time, leave by the nearest exit
without collecting belongings and gather at the assembly point in the car park.
""",
}

HANDBOOK_QUESTIONS: tuple[LabelledQuestion, ...] = tuple(
    LabelledQuestion(question, (document,))
    for document, question in (
        ("returns.md", "How long do I have to send back something I bought?"),
        ("returns.md", "When will my money be paid back after I return an order?"),
        ("returns.md", "Can I return a gift card?"),
        ("shipping.md", "How quickly will my parcel arrive if I order today?"),
        ("shipping.md", "Who pays customs fees on orders sent abroad?"),
        ("shipping.md", "Is postage free?"),
        ("warranty.html", "My gizmo broke after a year, will you fix it?"),
        ("warranty.html", "Is a phone dropped in the bath covered by the guarantee?"),
        ("discounts.md", "How many points do I need for a voucher?"),
        ("discounts.md", "Can I use two promo codes on the same purchase?"),
        ("discounts.md", "Do students get a price reduction?"),
        ("data-retention.md", "How long do you keep my purchase history?"),
        ("data-retention.md", "I want you to delete everything you hold about me."),
        ("data-retention.md", "When is security camera video removed?"),
        ("travel-expenses.md", "What is the nightly limit for a hotel in London?"),
        ("travel-expenses.md", "How much am I paid per mile when I drive my own car for work?"),
        ("travel-expenses.md", "Can I fly business class?"),
        ("security-incidents.md", "I clicked a link in a suspicious email, what should I do?"),
        ("security-incidents.md", "Someone stole my work computer."),
        ("remote-work.md", "How many days a week can I work from my house?"),
        ("remote-work.md", "Will the company pay for an office chair at home?"),
        ("annual-leave.md", "How many vacation days do I get?"),
        ("annual-leave.md", "Can I keep holiday I did not use this year?"),
        ("onboarding.txt", "What happens on my first day in the job?"),
        ("onboarding.txt", "How long is the trial period for new employees?"),
        ("passwords.md", "How long should my login secret be?"),
        ("passwords.md", "Why was my account locked after three months of not using it?"),
        ("procurement.html", "Do I need several offers before buying expensive equipment?"),
        ("procurement.html", "How do we start working with a new vendor?"),
        ("health-safety.md", "What should I do if the fire alarm rings?"),
        ("health-safety.md", "Someone slipped but was not injured, do I have to record it?"),
    )
)


def write_handbook_documents(directory: Path) -> list[Path]:
    """Write the handbook (Markdown, HTML, text; one topic per file) into ``directory``; return the paths.

    Each :data:`HANDBOOK_QUESTIONS` entry names the file that answers it, in other words than the file's.
    """
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in HANDBOOK_DOCUMENTS.items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths
