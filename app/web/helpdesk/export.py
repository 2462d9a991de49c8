"""CSV downloads (the audit trail, a batch), with every cell safe to open in a spreadsheet (no formula runs from it)."""
from __future__ import annotations

import csv
import io
import json
from typing import Iterable

from app.domain.cells import safe_cell

COLUMNS = ("id", "at", "actor_kind", "actor", "action", "student", "grant", "outcome", "reason", "detail")


def csv_text(columns: Iterable[str], rows: Iterable[Iterable[object]]) -> str:
    """Render rows as CSV (UTF-8 with BOM for spreadsheet programs), one safe cell at a time."""
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([safe_cell(v) for v in row])
    return out.getvalue()


def audit_csv(events: Iterable) -> str:
    """Render audit events as formula-safe CSV."""
    return csv_text(COLUMNS, ((e.id, e.at.isoformat(), e.actor_kind, e.actor, e.action, e.upn or "", e.grant_id or "",
                               e.outcome, e.reason, json.dumps(e.detail, sort_keys=True, default=str))
                              for e in events))
