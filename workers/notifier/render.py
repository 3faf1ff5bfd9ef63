"""What a notification says: the webhook body and the email (subject, plain text, HTML). Pure."""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

TITLES = {
    "low_stock_detected": "Low stock",
    "out_of_stock": "Out of stock",
    "back_in_stock": "Back in stock",
    "overstock_detected": "Overstock",
    "stock_level_normal": "Stock level normal",
    "stock_changed": "Stock changed",
    "item_registered": "Item registered",
    "price_changed": "Price changed",
    "margin_below_floor": "Margin below floor",
    "margin_recovered": "Margin recovered",
    "price_change_pending_approval": "Price change awaits approval",
    "command_rejected": "Command rejected",
}

# Event fields worth a line in an email, in this order, with their labels.
FACTS = (
    ("location", "Location"),
    ("available", "Available"),
    ("on_hand", "On hand"),
    ("reserved", "Reserved"),
    ("delta", "Change"),
    ("min_stock_level", "Minimum level"),
    ("max_stock_level", "Maximum level"),
    ("previous", "Previous state"),
    ("current", "Current state"),
    ("currency", "Currency"),
    ("old_price", "Old price"),
    ("new_price", "New price"),
    ("cost_price", "Cost price"),
    ("margin_pct", "Margin %"),
    ("floor_pct", "Margin floor %"),
    ("reason", "Reason"),
    ("code", "Code"),
)


def webhook_body(event_type: str, payload: dict[str, Any]) -> bytes:
    """Standard Webhooks shape: type, timestamp and the event as data."""
    body = {"type": event_type, "timestamp": payload.get("occurred_at"), "data": payload}
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class Email:
    subject: str
    text: str
    html: str


# C0 and C1 controls (CR and LF among them), DEL, and the Unicode line and paragraph separators: none may
# reach an email header, where a line break would start a header of the sender's choosing.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def one_line(value: str) -> str:
    """`value` on one line: every run of control characters becomes one space. Item names, SKUs and event
    types come from rows and events older than the contracts' refusal of control characters, and from
    upstream producers of the event topic, so render cannot trust them."""
    return _CONTROLS.sub(" ", value).strip()


def title(event_type: str) -> str:
    return TITLES.get(event_type, event_type.replace("_", " ").capitalize())


def item_link(public_url: str, sku: str) -> str:
    return f"{public_url.rstrip('/')}/dashboard/#/items/{quote(sku, safe='')}"


def facts(payload: dict[str, Any]) -> list[tuple[str, str]]:
    return [(label, str(payload[key])) for key, label in FACTS if payload.get(key) is not None]


def email(event_type: str, payload: dict[str, Any], *, item_name: str | None, public_url: str) -> Email:
    sku = one_line(str(payload.get("sku", "")))
    name = one_line(item_name or sku)
    link = item_link(public_url, sku)
    lines = [(label, one_line(value)) for label, value in facts(payload)]
    headline = f"{title(one_line(event_type))}: {sku} ({name})"
    location = payload.get("location")
    if isinstance(location, str) and location:
        # A per-location alert and the SKU-level one on the totals read alike but for this.
        headline += f" at {one_line(location)}"
    summary = next((v for label, v in lines if label == "Available"), None) or next(
        (v for label, v in lines if label == "New price"), None
    )
    subject = f"[inventory-monitor] {headline}" + (f" - {summary}" if summary else "")
    when = payload.get("occurred_at", "")
    text = "\n".join(
        [
            headline,
            "",
            f"Item: {name}",
            f"SKU: {sku}",
            *(f"{label}: {value}" for label, value in lines),
            f"When: {when}",
            "",
            f"Open the item: {link}",
            "",
            f"Event {payload.get('event_id', '')} ({event_type})",
        ]
    )
    rows = "".join(
        f"<tr><th align='left'>{html.escape(label)}</th><td>{html.escape(value)}</td></tr>"
        for label, value in [("Item", name), ("SKU", sku), *lines, ("When", str(when))]
    )
    body_html = (
        f"<html><body><h2>{html.escape(headline)}</h2><table>{rows}</table>"
        f'<p><a href="{html.escape(link, quote=True)}">Open {html.escape(sku)} in the dashboard</a></p>'
        f"<p style='color:#666'>Event {html.escape(str(payload.get('event_id', '')))} "
        f"({html.escape(event_type)})</p></body></html>"
    )
    return Email(subject, text, body_html)
