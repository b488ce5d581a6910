"""Stock files, as ``stockade import`` reads them and ``stockade export`` writes them: CSV with
the header ``sku,location,on_hand``, or JSON lines ``{"sku": ..., "location": ..., "on_hand":
...}``. Plain functions over lines of bytes: no I/O.

Reading checks each line on its own (fields, sku and location syntax, a whole non-negative
on_hand within the largest stock) and then the file as a whole (a sku-location set twice); each
problem becomes a :class:`BadRow` naming its line. What depends on a store (unknown locations,
holds) is checked by :mod:`stockade.bulk`. Blank lines are skipped; lines are numbered from 1,
the header included.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Literal, TextIO

import msgspec

from stockade.engine.validation import MAX_STOCK, check_location_id, check_sku
from stockade.errors import InvalidRequest

__all__ = [
    "FORMATS",
    "HEADER",
    "BadRow",
    "Format",
    "StockRow",
    "duplicates",
    "parse",
    "sniff",
    "writer",
]

Format = Literal["csv", "jsonl"]
FORMATS: tuple[Format, ...] = ("csv", "jsonl")
HEADER = ("sku", "location", "on_hand")
_INTEGER = re.compile(r"-?[0-9]+")
_EXTENSIONS: dict[str, Format] = {
    ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
}  # fmt: skip
_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


class StockRow(msgspec.Struct, frozen=True, gc=False):
    """One line of a stock file that reads well: set ``sku``'s on-hand at ``location``."""

    line: int
    sku: str
    location: str
    on_hand: int


class BadRow(msgspec.Struct, frozen=True, gc=False):
    """A line that cannot be imported, and why (in words to show the person who wrote it)."""

    line: int
    reason: str


def sniff(name: str, head: bytes) -> Format:
    """The format of a file named ``name`` whose first bytes are ``head``: by its extension
    (``.csv``; ``.jsonl``, ``.ndjson``, ``.json``), else JSON lines when its first non-blank
    character is ``{``, else CSV."""
    for extension, format in _EXTENSIONS.items():
        if name.lower().endswith(extension):
            return format
    return "jsonl" if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") else "csv"


def parse(lines: Iterable[bytes], format: Format) -> Iterator[StockRow | BadRow]:
    """Each non-blank line of a stock file as a StockRow or a BadRow. A CSV file's first
    non-blank line must be the header; if it is not, that is a BadRow and nothing else is
    read (without it the columns mean nothing)."""
    header = format == "csv"
    for number, raw in enumerate(lines, 1):
        try:
            text = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as exc:
            yield BadRow(number, f"not UTF-8 text ({exc.reason} at byte {exc.start})")
            continue
        if number == 1:
            text = text.removeprefix("\ufeff")
        if not text.strip():
            continue
        if header:
            fields = next(csv.reader([text]))
            if tuple(f.strip() for f in fields) != HEADER:
                yield BadRow(number, f"the first line must be the header {','.join(HEADER)}")
                return
            header = False
            continue
        try:
            yield _csv_row(number, text) if format == "csv" else _jsonl_row(number, text)
        except InvalidRequest as exc:
            yield BadRow(number, str(exc))


def _csv_row(number: int, text: str) -> StockRow:
    fields = next(csv.reader([text]))
    if len(fields) != len(HEADER):
        much = "many" if len(fields) > len(HEADER) else "few"
        raise InvalidRequest(
            f"too {much} fields: {len(fields)} where {','.join(HEADER)} are {len(HEADER)}"
        )
    sku, location, on_hand = fields
    if not _INTEGER.fullmatch(on_hand):
        raise InvalidRequest(f"on_hand {on_hand!r} is not a whole number")
    return _row(number, sku, location, int(on_hand))


def _jsonl_row(number: int, text: str) -> StockRow:
    try:
        value = _decoder.decode(text)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"not a JSON object: {exc}") from None
    if type(value) is not dict:
        raise InvalidRequest(f"not a JSON object with {', '.join(HEADER)}")
    extra = sorted(set(value) - set(HEADER))
    if extra:
        raise InvalidRequest(f"too many fields: {', '.join(map(repr, extra))} is not one of "
                             f"{', '.join(HEADER)}")  # fmt: skip
    missing = [name for name in HEADER if name not in value]
    if missing:
        raise InvalidRequest(f"missing field {missing[0]!r}")
    on_hand = value["on_hand"]
    if type(on_hand) is not int:
        raise InvalidRequest(f"on_hand {on_hand!r} is not a whole number")
    return _row(number, value["sku"], value["location"], on_hand)


def _row(number: int, sku: object, location: object, on_hand: int) -> StockRow:
    check_sku(sku)
    check_location_id(location, what="location")
    if on_hand < 0:
        raise InvalidRequest(f"on_hand {on_hand} is negative")
    if on_hand > MAX_STOCK:
        raise InvalidRequest(f"on_hand {on_hand} is above the largest stock, {MAX_STOCK}")
    assert isinstance(sku, str) and isinstance(location, str)
    return StockRow(number, sku, location, on_hand)


def duplicates(rows: Iterable[StockRow]) -> list[BadRow]:
    """A BadRow for every line of a sku-location that more than one line sets (all of them:
    the file does not say which is right)."""
    lines: dict[tuple[str, str], list[int]] = {}
    for row in rows:
        lines.setdefault((row.sku, row.location), []).append(row.line)
    bad = []
    for (sku, location), numbers in lines.items():
        if len(numbers) > 1:
            listed = ", ".join(map(str, numbers))
            for number in numbers:
                bad.append(BadRow(number, f"{sku} at {location} is set on more than one line "
                                          f"({listed})"))  # fmt: skip
    bad.sort(key=lambda b: b.line)
    return bad


def writer(stream: TextIO, format: Format) -> Callable[[tuple[str, str, int]], None]:
    """A function that writes one ``(sku, location, on_hand)`` row to ``stream`` in
    ``format``; for CSV the header is written at once."""
    if format == "jsonl":

        def write_jsonl(row: tuple[str, str, int]) -> None:
            sku, location, on_hand = row
            line = {"sku": sku, "location": location, "on_hand": on_hand}
            stream.write(_encoder.encode(line).decode() + "\n")

        return write_jsonl
    out = csv.writer(stream, lineterminator="\n")
    out.writerow(HEADER)
    return out.writerow
