"""The feed's pages (stockade/persistence/pages.py): what a store writes reads back as the events
it was made from, through any position, limit and type filter."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stockade.engine.feed import EventRow
from stockade.errors import CorruptStore
from stockade.persistence.pages import page_events, pages_of

TYPES = ["order.placed", "order.cancelled", "stock.changed", "product.sold_out"]

payloads = st.one_of(
    st.just('{"id":"o1","lines":{"a":1}}'),
    st.just('{"sku":"caf\\u00e9 \\"x\\"","stock_level":{"on_hand":0}}'),
    st.just("[]"),
    st.just('"a string, with ] and ,"'),
)
event = st.tuples(
    st.sampled_from(TYPES),
    st.floats(min_value=0, max_value=4e9, allow_nan=False),
    st.one_of(st.none(), st.text(max_size=8)),
    payloads,
)


def numbered(first: int, raw: list[tuple[str, float, str | None, str]]) -> list[EventRow]:
    return [(first + i, kind, at, sku, data) for i, (kind, at, sku, data) in enumerate(raw)]


def expected(
    events: list[EventRow], after: int, limit: int, types: tuple[str, ...] | None
) -> list[EventRow]:
    wanted = [e for e in events if e[0] > after and (types is None or e[1] in types)]
    return wanted[:limit]


@given(
    batches=st.lists(st.lists(event, min_size=1, max_size=12), max_size=6),
    size=st.integers(1, 5),
    after=st.integers(0, 60),
    limit=st.integers(1, 80),
    types=st.one_of(st.none(), st.sets(st.sampled_from(TYPES), min_size=1).map(tuple)),
)
def test_pages_read_back_as_the_events_they_hold(batches, size, after, limit, types):
    events: list[EventRow] = []
    pages = []
    for raw in batches:  # a page never spans two batches
        batch = numbered(len(events) + 1, raw)
        made = pages_of(batch, size)
        assert [p[1] for p in made] == [batch[i][0] for i in range(0, len(batch), size)]
        assert all(len(range(p[1], p[0] + 1)) <= size for p in made)
        pages += made
        events += batch
    found, full = page_events(pages, after, limit, types)
    assert found == expected(events, after, limit, types)
    assert full == (len(found) == limit)


def test_a_lone_event_is_a_plain_row_and_a_page_keeps_its_newest_time():
    lone = pages_of([(7, "stock.changed", 1.5, "a", "{}")])
    assert lone == [(7, 7, 1.5, "stock.changed", "a", None, "{}")]
    (page,) = pages_of(numbered(3, [("order.placed", 2.0, None, "{}"), ("x", 1.0, "b", "[]")]))
    assert page[:5] == (4, 3, 2.0, None, None)  # pruned only once both are old enough
    assert page[6] == "[{},[]]"


@pytest.mark.parametrize(
    "meta, data",
    [("[[\"order.placed\",1.0,null]]", "[{}]"),  # one event for seqs 1..2
     ("not json", "[{},{}]"),
     ("[[\"order.placed\",1.0,null],[\"order.placed\",2.0,null]]", "[{}]")],
)  # fmt: skip
def test_a_page_that_cannot_be_read_back_is_a_corrupt_store(meta, data):
    with pytest.raises(CorruptStore, match=r"page 1\.\.2"):
        page_events([(2, 1, 2.0, None, None, meta, data)], 0, 10)
