"""The batch CSV intake against what spreadsheet programs export and what a hostile file holds."""
from __future__ import annotations

import pytest

from app.domain.batch_csv import (BAD_ADDRESS, BAD_NAME, BAD_UPN, DUPLICATE, FORMULA, MAX_BYTES, MAX_ROWS, NO_UPN,
                                  TOO_LONG, CsvRejected, read_batch_csv)
from app.domain.cells import is_formula, safe_cell


def rejected(data: bytes) -> CsvRejected:
    with pytest.raises(CsvRejected) as caught:
        read_batch_csv(data)
    return caught.value


def test_excel_export_with_bom_semicolons_and_crlf_is_read():
    data = "\ufeffUserPrincipalName;E-Mail;Display Name\r\nAda@Uni.Test;ada@mail.test;Ada Lovelace\r\n;;\r\n".encode()
    intake = read_batch_csv(data)
    assert intake.delimiter == ";" and intake.has_mail and intake.has_name
    (row,) = intake.rows
    assert (row.line, row.upn, row.mail, row.name, row.problem) == (2, "ada@uni.test", "ada@mail.test",
                                                                    "Ada Lovelace", "")


def test_comma_file_without_bom_and_only_a_upn_column():
    intake = read_batch_csv(b"upn\nalan@uni.test\ngrace@uni.test\n")
    assert intake.delimiter == "," and not intake.has_mail
    assert [r.upn for r in intake.good] == ["alan@uni.test", "grace@uni.test"]


def test_quoted_cells_with_the_other_delimiter_inside_stay_one_cell():
    intake = read_batch_csv(b'name,upn\n"Hopper; Grace",grace@uni.test\n')
    assert intake.rows[0].name == "Hopper; Grace" and intake.rows[0].upn == "grace@uni.test"


@pytest.mark.parametrize("header", ["UPN", "user_principal_name", "User Principal Name", "Benutzername", "login"])
def test_upn_header_spellings(header):
    assert read_batch_csv(f"{header}\nx@uni.test\n".encode()).rows[0].upn == "x@uni.test"


@pytest.mark.parametrize(("data", "code"), [
    (b"", "empty"), (b"\n\n  \n", "empty"), (b"\xef\xbb\xbf", "empty"),
    (b"name,mail\nAda,ada@mail.test\n", "no_upn_column"),
    ("upn\nj\u00f6rg@uni.test\n".encode("latin-1"), "not_utf8"),
    ("upn\r\nx@uni.test\r\n".encode("utf-16"), "utf16"),
    (b"upn\x00\nx@uni.test", "not_text"),
    (b"upn\n" + b"x" * 200_000 + b"@uni.test\n", "not_csv"),
])
def test_unreadable_files_are_refused_whole(data, code):
    assert rejected(data).code == code


def test_wrong_encoding_names_the_line():
    error = rejected("upn\na@uni.test\nj\u00f6rg@uni.test\n".encode("cp1252"))
    assert error.code == "not_utf8" and error.params == {"line": 3}


def test_missing_column_says_what_columns_were_found():
    assert rejected(b"Vorname;Nachname\nAda;Lovelace\n").params["found"] == "Vorname, Nachname"


def test_size_and_row_bounds():
    assert rejected(b"upn\n" + b"a@uni.test\n" * (MAX_BYTES // 11 + 1)).code == "too_big"
    fits = "upn\n" + "".join(f"s{i}@uni.test\n" for i in range(MAX_ROWS))
    assert len(read_batch_csv(fits.encode()).rows) == MAX_ROWS
    error = rejected((fits + "one.more@uni.test\n").encode())
    assert error.code == "too_many_rows" and error.params == {"max_rows": MAX_ROWS}


@pytest.mark.parametrize("cell", ["=HYPERLINK(\"http://x\")", "+1", "-1", "@SUM(A1)", "\tx@uni.test", "\rx@uni.test",
                                  "  =1+1"])
def test_formula_cells_skip_their_row(cell):
    for data in (f'upn,name\n"{cell}",Ada\n', f'upn,name\nada@uni.test,"{cell}"\n',
                 f'upn,mail\nada@uni.test,"{cell}"\n'):
        (row,) = read_batch_csv(data.encode()).rows
        assert row.problem == FORMULA and row.upn is None


def test_each_bad_row_gets_its_reason_and_good_rows_stay():
    data = ("upn;mail;name\n"
            "ada@uni.test;ada@mail.test;Ada\n"
            ";x@mail.test;Nobody\n"
            "not a upn;;Space\n"
            "ADA@uni.test ;;Ada again\n"
            "bob@uni.test;bob at mail;Bob\n"
            f"{'l' * 330}@uni.test;;Long\n"
            "eve@uni.test;;Eve\x07\n"
            "grace@uni.test\n").encode()
    rows = read_batch_csv(data).rows
    assert [(r.line, r.problem) for r in rows] == [(2, ""), (3, NO_UPN), (4, BAD_UPN), (5, DUPLICATE),
                                                   (6, BAD_ADDRESS), (7, TOO_LONG), (8, BAD_NAME), (9, "")]
    assert rows[3].first_line == 2 and rows[3].upn == "ada@uni.test"
    assert rows[-1].mail == "" and rows[-1].name == ""  # a short row just lacks the optional cells


def test_shown_cells_are_bounded_and_printable():
    (row,) = read_batch_csv(("upn\n" + "\u202e" + "x" * 100 + "\n").encode()).rows
    assert row.problem == BAD_UPN and len(row.shown) <= 80 and row.shown.isprintable()


def test_quoted_line_breaks_keep_line_numbers_of_the_file():
    rows = read_batch_csv(b'upn,name\na@uni.test,"two\nlines"\nb@uni.test,B\n').rows
    assert [r.line for r in rows] == [3, 4] and rows[0].name == "two lines"


@pytest.mark.parametrize(("value", "formula"), [("=1", True), (" -1", True), ("a-b", False), ("", False)])
def test_one_formula_rule_for_import_and_export(value, formula):
    assert is_formula(value) is formula
    assert safe_cell(value).startswith("'") is formula
