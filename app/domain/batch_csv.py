"""A weekly batch's CSV, read as spreadsheet programs export it: pure, bounded, every row with a verdict.

UTF-8 with or without a BOM, comma or semicolon (sniffed from the header line), a header that names a UPN
column (tolerant of the usual spellings) and optionally a mail and a name column. The whole file is refused
for what makes it unreadable (too big, not UTF-8, no UPN column, too many rows); a single bad row is kept
with the code of its problem, so the preview can say why it is skipped.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from app.domain.errors import Refused
from app.domain.cells import is_formula
from app.domain.mail import valid_address
from app.domain.upn import Upn

MAX_ROWS = 2_000  # students in one batch (the desk onboards about 30 a week; a whole intake fits)
MAX_BYTES = 1024 * 1024  # 2,000 rows of UPN, mail and name take about 300 KB
MAX_UPN_CHARS = 320
MAX_MAIL_CHARS = 254
MAX_NAME_CHARS = 256
SHOWN_CHARS = 80  # of a bad cell, kept to show the desk what the file said

# Header spellings, compared without case, spaces, dots, hyphens and underscores.
UPN_HEADERS = ("upn", "userprincipalname", "principalname", "username", "user", "login", "account",
               "benutzername", "anmeldename", "benutzerprinzipalname")
MAIL_HEADERS = ("mail", "email", "emailaddress", "mailaddress", "address", "smtp", "emailadresse", "mailadresse")
NAME_HEADERS = ("name", "displayname", "fullname", "studentname", "anzeigename", "vollername")


class CsvRejected(Refused):
    """The file as a whole cannot be read; `code` names why, `params` fill the desk's message."""


# Why a row is skipped before anything is looked up (the preview words each code).
NO_UPN = "no_upn"
BAD_UPN = "bad_upn"
FORMULA = "formula"
DUPLICATE = "duplicate"
BAD_ADDRESS = "bad_address"
TOO_LONG = "too_long"
BAD_NAME = "bad_name"


@dataclass(frozen=True)
class IntakeRow:
    """One data row: where it was, what it said (bounded), and its problem code ("" when it is fine)."""

    line: int  # the file's line number, as a spreadsheet shows it (the header is line 1)
    upn: Upn | None
    shown: str  # the UPN cell as the file had it (bounded, for the preview)
    mail: str = ""
    name: str = ""
    problem: str = ""
    first_line: int = 0  # for a duplicate: the line that named the student first

    @property
    def ok(self) -> bool:
        return not self.problem


@dataclass(frozen=True)
class Intake:
    """A read batch file: its rows in file order and which columns it had."""

    rows: tuple[IntakeRow, ...]
    delimiter: str
    has_mail: bool
    has_name: bool

    @property
    def good(self) -> tuple[IntakeRow, ...]:
        return tuple(r for r in self.rows if r.ok)


def _header_key(cell: str) -> str:
    return "".join(c for c in cell.lower() if c.isalnum())


def _find(header: list[str], names: tuple[str, ...]) -> int | None:
    keys = [_header_key(h) for h in header]
    for name in names:  # the first spelling in the list wins over a later column
        if name in keys:
            return keys.index(name)
    return None


def _decode(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise CsvRejected("utf16")
    if b"\x00" in data:
        raise CsvRejected("not_text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CsvRejected("not_utf8", line=data.count(b"\n", 0, exc.start) + 1) from None


def _sniff(header_line: str) -> str:
    """Pick the delimiter of the header line: the one of comma and semicolon it has more of."""
    return ";" if header_line.count(";") > header_line.count(",") else ","


def _shown(text: str) -> str:
    text = "".join(c if c.isprintable() else "\N{REPLACEMENT CHARACTER}" for c in text)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS - 1] + "\N{HORIZONTAL ELLIPSIS}"


def read_batch_csv(data: bytes) -> Intake:
    """Read a batch file; raise CsvRejected for a file that cannot be read, mark each bad row with its problem."""
    if len(data) > MAX_BYTES:
        raise CsvRejected("too_big", max_kb=MAX_BYTES // 1024)
    text = _decode(data)
    if not text.strip():
        raise CsvRejected("empty")
    delimiter = _sniff(text.lstrip().split("\n", 1)[0])
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=False)
    try:
        header = next(reader)
        while not any(cell.strip() for cell in header):  # blank lines above the header
            header = next(reader)
    except (StopIteration, csv.Error):
        raise CsvRejected("empty") from None
    upn_at = _find(header, UPN_HEADERS)
    if upn_at is None:
        raise CsvRejected("no_upn_column", found=", ".join(_shown(h) for h in header[:8] if h.strip()))
    mail_at, name_at = _find(header, MAIL_HEADERS), _find(header, NAME_HEADERS)
    rows: list[IntakeRow] = []
    first_seen: dict[Upn, int] = {}
    try:
        for cells in reader:
            if not any(cell.strip() for cell in cells):
                continue  # spreadsheet programs end files with empty lines
            if len(rows) == MAX_ROWS:
                raise CsvRejected("too_many_rows", max_rows=MAX_ROWS)
            rows.append(_row(reader.line_num, cells, upn_at, mail_at, name_at, first_seen))
    except csv.Error:
        raise CsvRejected("not_csv", line=reader.line_num) from None
    return Intake(tuple(rows), delimiter, mail_at is not None, name_at is not None)


def _cell(cells: list[str], at: int | None) -> str:
    return cells[at] if at is not None and at < len(cells) else ""


def _row(line: int, cells: list[str], upn_at: int, mail_at: int | None, name_at: int | None,
         first_seen: dict[Upn, int]) -> IntakeRow:
    raw_upn, raw_mail, raw_name = _cell(cells, upn_at), _cell(cells, mail_at), _cell(cells, name_at)
    mail, name = raw_mail.strip(), " ".join(raw_name.split())
    shown = _shown(raw_upn.strip())

    def bad(problem: str, upn: Upn | None = None, first: int = 0) -> IntakeRow:
        return IntakeRow(line, upn, shown, _shown(mail), _shown(name), problem, first)

    # A formula anywhere in the row: the file was tampered with or garbled; nothing of it is trusted.
    if any(is_formula(cell) for cell in (raw_upn, raw_mail, raw_name) if cell):
        return bad(FORMULA)
    if not raw_upn.strip():
        return bad(NO_UPN)
    if len(raw_upn) > MAX_UPN_CHARS or len(mail) > MAX_MAIL_CHARS or len(raw_name) > MAX_NAME_CHARS:
        return bad(TOO_LONG)
    upn = Upn.parse(raw_upn)
    if upn is None:
        return bad(BAD_UPN)
    if upn in first_seen:
        return bad(DUPLICATE, upn, first_seen[upn])
    first_seen[upn] = line
    if mail and not valid_address(mail):
        return bad(BAD_ADDRESS, upn)
    if any(not c.isprintable() for c in name):
        return bad(BAD_NAME, upn)
    return IntakeRow(line, upn, shown, mail, name)
