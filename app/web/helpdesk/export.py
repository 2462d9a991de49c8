"""The audit trail as CSV, with every cell safe to open in a spreadsheet (no formula runs from it)."""
from __future__ import annotations

import csv
import io
import json
from typing import Iterable

# A cell starting with one of these is a formula (or becomes one) in Excel, LibreOffice and Google Sheets.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
COLUMNS = ("id", "at", "actor_kind", "actor", "action", "student", "grant", "outcome", "reason", "detail")


def safe_cell(value: object) -> str:
    """Return a cell's text, neutralised with a leading apostrophe when a spreadsheet would run it as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def audit_csv(events: Iterable) -> str:
    """Render audit events as CSV (UTF-8 with BOM for spreadsheet programs), one safe cell at a time."""
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for e in events:
        row = (e.id, e.at.isoformat(), e.actor_kind, e.actor, e.action, e.upn or "", e.grant_id or "", e.outcome,
               e.reason, json.dumps(e.detail, sort_keys=True, default=str))
        writer.writerow([safe_cell(v) for v in row])
    return out.getvalue()
