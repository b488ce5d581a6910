"""Stock files as ``stockade import`` reads them (stockade/stockfile.py, stockade/bulk.py's
read_file): each bad line is named with its number and why, good lines become rows; and what
``stockade export`` writes reads back the same."""

from __future__ import annotations

import io

import pytest
import trio

from stockade.bulk import Progress, read_file
from stockade.stockfile import BadRow, StockRow, sniff, writer


def lines(text: str) -> list[bytes]:
    return text.encode().splitlines(keepends=True)


def test_a_good_csv_file_reads_as_rows_with_their_line_numbers():
    read = read_file(
        lines("\ufeffsku,location,on_hand\r\n\r\na,default,5\r\nb-1:x,north,0\r\n"), "csv"
    )
    assert read.bad == []
    assert read.rows == [StockRow(3, "a", "default", 5), StockRow(4, "b-1:x", "north", 0)]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("a,default,5,9", "too many fields: 4 where sku,location,on_hand are 3"),
        ("a,default", "too few fields: 2 where sku,location,on_hand are 3"),
        ("a b,default,5", "invalid sku 'a b'"),
        (",default,5", "invalid sku ''"),
        ("a,we st,5", "invalid location 'we st'"),
        ("a,default,-3", "on_hand -3 is negative"),
        ("a,default,2.5", "on_hand '2.5' is not a whole number"),
        ("a,default,", "on_hand '' is not a whole number"),
        ("a,default, 5", "on_hand ' 5' is not a whole number"),
        ("a,default,1e3", "on_hand '1e3' is not a whole number"),
        ("a,default,1000000000001", "on_hand 1000000000001 is above the largest stock"),
    ],
)
def test_each_bad_csv_line_is_named_with_why(line, reason):
    read = read_file(lines(f"sku,location,on_hand\nok,default,1\n{line}\n"), "csv")
    assert read.rows == [StockRow(2, "ok", "default", 1)]
    (bad,) = read.bad
    assert bad.line == 3 and bad.reason.startswith(reason), bad


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"sku": "a", "location": "default", "on_hand": 5, "x": 1}', "too many fields: 'x'"),
        ('{"sku": "a", "on_hand": 5}', "missing field 'location'"),
        ('{"sku": "a", "location": "default", "on_hand": 5.0}', "on_hand 5.0 is not a whole"),
        ('{"sku": "a", "location": "default", "on_hand": "5"}', "on_hand '5' is not a whole"),
        ('{"sku": "a", "location": "default", "on_hand": true}', "on_hand True is not a whole"),
        ('{"sku": 7, "location": "default", "on_hand": 5}', "invalid sku 7"),
        ('["a", "default", 5]', "not a JSON object"),
        ('{"sku": "a",', "not a JSON object"),
    ],
)
def test_each_bad_json_line_is_named_with_why(line, reason):
    good = '{"sku": "ok", "location": "default", "on_hand": 1}'
    read = read_file(lines(f"{good}\n\n{line}\n"), "jsonl")
    assert read.rows == [StockRow(1, "ok", "default", 1)]
    (bad,) = read.bad
    assert bad.line == 3 and bad.reason.startswith(reason), bad


def test_every_line_of_a_sku_location_set_twice_is_bad():
    read = read_file(lines("sku,location,on_hand\na,default,1\nb,default,1\na,default,2\n"
                           "a,north,3\n"), "csv")  # fmt: skip
    assert [r.line for r in read.rows] == [3, 5]
    assert read.bad == [
        BadRow(2, "a at default is set on more than one line (2, 4)"),
        BadRow(4, "a at default is set on more than one line (2, 4)"),
    ]


def test_a_csv_file_without_its_header_is_refused_at_line_one():
    read = read_file(lines("a,default,1\nb,default,2\n"), "csv")
    assert read.rows == [] and read.bad == [
        BadRow(1, "the first line must be the header sku,location,on_hand")
    ]


def test_a_line_that_is_not_utf8_is_bad_and_the_rest_reads():
    read = read_file([b"sku,location,on_hand\n", b"\xff\xfe,default,1\n", b"a,default,1\n"], "csv")
    assert read.rows == [StockRow(3, "a", "default", 1)]
    assert read.bad[0].line == 2 and read.bad[0].reason.startswith("not UTF-8 text")


def test_the_format_is_picked_by_extension_then_content():
    assert sniff("stock.CSV", b"{") == "csv"
    assert sniff("stock.jsonl", b"sku") == "jsonl"
    assert sniff("stock.ndjson", b"") == "jsonl"
    assert sniff("-", b'\n  {"sku": "a"}') == "jsonl"
    assert sniff("stock.txt", b"sku,location,on_hand") == "csv"


@pytest.mark.parametrize("format", ["csv", "jsonl"])
def test_what_export_writes_reads_back_the_same(format):
    out = io.StringIO()
    write = writer(out, format)
    rows = [("a", "default", 5), ("a", "north", 0), ("b.c:d-e_f", "default", 10**12)]
    for row in rows:
        write(row)
    read = read_file(lines(out.getvalue()), format)
    assert read.bad == []
    assert [(r.sku, r.location, r.on_hand) for r in read.rows] == rows


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_progress_is_drawn_on_a_terminal_only(autojump_clock):
    shown = Terminal()
    progress = Progress(shown, 4)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(progress.run)
        for _ in range(3):
            await trio.sleep(0.3)
            progress.step()
        await trio.sleep(0.3)
        nursery.cancel_scope.cancel()
    drawn = shown.getvalue()
    assert drawn.startswith("\rimported 0 of 4 rows (0%") and drawn.endswith("\n")
    assert "\rimported 3 of 4 rows (75%" in drawn
    quiet = io.StringIO()
    progress = Progress(quiet, 4)
    with trio.move_on_after(1):
        await progress.run()
    assert quiet.getvalue() == ""
