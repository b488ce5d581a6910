from datetime import UTC, datetime

import pytest

from stockade import IdempotencyConflict, InvalidTransition, OrderNotFound
from stockade.engine.events import OrderCancelled, OrderConfirmed, OrderExpired, OrderPlaced
from stockade.engine.orders import OrderBook

T0 = 1_000_000.0
CREATED = datetime.fromtimestamp(T0, UTC)


def book_with_hold(expires_in: float = 60.0) -> OrderBook:
    book = OrderBook(key_ttl_s=100.0)
    book.place("o1", {"a": 2}, T0, CREATED, T0 + expires_in, "k1")
    return book


def test_place_direct_and_held():
    book = OrderBook(key_ttl_s=100.0)
    order, event = book.place("d", {"a": 1}, T0, CREATED, None, None)
    assert order.status == "confirmed" and order.expires_at is None
    assert event == OrderPlaced(order, T0)
    order, _ = book.place("h", {"a": 1}, T0, CREATED, T0 + 5, None)
    assert order.status == "reserved"
    assert order.expires_at == datetime.fromtimestamp(T0 + 5, UTC)


def test_confirm_is_idempotent_and_refused_after_the_deadline():
    book = book_with_hold()
    order, event = book.confirm("o1", T0 + 1)
    assert order.status == "confirmed" and isinstance(event, OrderConfirmed)
    assert book.confirm("o1", T0 + 2) == (order, None)

    late = book_with_hold()
    with pytest.raises(InvalidTransition):
        late.confirm("o1", T0 + 60)  # at the deadline, even before expire() ran
    assert late.get("o1").status == "reserved"  # refusing changed nothing


def test_expire_only_lapsed_reserved_orders():
    book = book_with_hold()
    assert book.expire("o1", T0 + 59.9) is None
    expired = book.expire("o1", T0 + 60)
    assert expired is not None
    order, event = expired
    assert order.status == "expired" and event == OrderExpired("o1", {"a": 2}, T0 + 60)
    assert book.expire("o1", T0 + 61) is None
    with pytest.raises(InvalidTransition):
        book.confirm("o1", T0 + 61)
    assert book.cancel("o1", T0 + 61) == (order, None)  # cancelling an expired order: as is


def test_cancel_releases_or_returns_and_is_idempotent():
    book = book_with_hold()
    order, event = book.cancel("o1", T0)
    assert event == OrderCancelled("o1", {"a": 2}, T0, was="reserved")
    assert book.cancel("o1", T0) == (order, None)
    with pytest.raises(InvalidTransition):
        book.confirm("o1", T0)

    sold = book_with_hold()
    sold.confirm("o1", T0)
    _, event = sold.cancel("o1", T0)
    assert event is not None and event.was == "confirmed"


def test_unknown_orders():
    book = OrderBook(key_ttl_s=1.0)
    for call in (book.get, lambda oid: book.confirm(oid, T0), lambda oid: book.cancel(oid, T0)):
        with pytest.raises(OrderNotFound):
            call("missing")
    with pytest.raises(OrderNotFound):
        book.get(123)  # type: ignore[arg-type]


def test_idempotency_keys_conflict_and_are_forgotten_after_their_ttl():
    book = book_with_hold()
    found = book.by_key("k1", {"a": 2}, T0 + 1)
    assert found is not None and found.id == "o1"
    with pytest.raises(IdempotencyConflict):
        book.by_key("k1", {"a": 3}, T0 + 1)
    assert book.by_key("k2", {"a": 2}, T0 + 1) is None
    assert book.by_key("k1", {"a": 2}, T0 + 100) is None  # remembered for key_ttl_s only
