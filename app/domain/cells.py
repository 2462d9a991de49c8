"""Spreadsheet cells: which text a spreadsheet program would run as a formula (one rule for import and export)."""
from __future__ import annotations

# A cell starting with one of these is a formula (or becomes one) in Excel, LibreOffice and Google Sheets.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def is_formula(text: str) -> bool:
    """Tell whether a spreadsheet would take this cell for a formula (also after the spaces it trims)."""
    return text.startswith(FORMULA_STARTS) or text.lstrip(" ").startswith(FORMULA_STARTS)


def safe_cell(value: object) -> str:
    """Return a cell's text, neutralised with a leading apostrophe when a spreadsheet would run it as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if is_formula(text) else text
