from datetime import UTC, datetime

import pytest

from stockade import IdempotencyConflict, InvalidRequest, InvalidTransition, OrderNotFound
from stockade.engine.changes import OrderCancelled, OrderConfirmed, OrderExpired, OrderPlaced
from stockade.engine.models import KeyUse
from stockade.engine.orders import OrderBook

T0 = 1_000_000.0
CREATED = datetime.fromtimestamp(T0, UTC)


def book_with_hold(expires_in: float = 60.0) -> OrderBook:
    book = OrderBook(key_ttl_s=100.0)
    book.place("o1", {"a": 2}, {"a": {"default": 2}}, T0, CREATED, T0 + expires_in, "k1")
    return book


def test_place_direct_and_held():
    book = OrderBook(key_ttl_s=100.0)
    order, event = book.place("d", {"a": 1}, {"a": {"default": 1}}, T0, CREATED, None, None)
    assert order.status == "confirmed" and order.expires_at is None
    assert event == OrderPlaced(order, T0)
    order, _ = book.place("h", {"a": 1}, {"a": {"default": 1}}, T0, CREATED, T0 + 5, None)
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
    assert order.status == "expired" and event == OrderExpired(order, T0 + 60)
    assert book.expire("o1", T0 + 61) is None
    with pytest.raises(InvalidTransition):
        book.confirm("o1", T0 + 61)
    assert book.cancel("o1", T0 + 61) == (order, None)  # cancelling an expired order: as is


def test_cancel_releases_or_returns_and_is_idempotent():
    book = book_with_hold()
    order, event = book.cancel("o1", T0)
    assert event == OrderCancelled(order, T0, "reserved")
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
    found = book.recall("k1", "place", {"a": 2}, T0 + 1)
    assert found is not None and found.order_id == "o1"
    with pytest.raises(IdempotencyConflict):
        book.recall("k1", "place", {"a": 3}, T0 + 1)
    with pytest.raises(IdempotencyConflict):  # the same key for another kind of request
        book.recall("k1", "extend", 60.0, T0 + 1, "o1")
    assert book.recall("k2", "place", {"a": 2}, T0 + 1) is None
    assert book.recall("k1", "place", {"a": 2}, T0 + 100) is None  # remembered for key_ttl_s


def test_a_key_remembers_the_request_not_the_order_as_it_is_now():
    book = book_with_hold()
    book.change("o1", {"a": 5}, {"a": {"default": 5}}, {"a": {"default": 3}}, T0 + 1)
    assert book.recall("k1", "place", {"a": 2}, T0 + 2) is not None  # the original lines


def test_change_replaces_lines_and_extend_moves_the_deadline_up_to_the_cap():
    book = OrderBook(key_ttl_s=100.0, max_lifetime_s=300.0)
    book.place("o1", {"a": 2}, {"a": {"default": 2}}, T0, CREATED, T0 + 60, None)
    order, event = book.change("o1", {"a": 1}, {"a": {"default": 1}}, {"a": {"default": -1}}, T0)
    assert order.lines == {"a": 1} and event.moves == {"a": {"default": -1}}
    order, extended = book.extend("o1", 120.0, T0 + 10)
    assert extended is not None and book.deadline("o1") == T0 + 130
    assert book.extend("o1", 30.0, T0 + 20) == (order, None)  # a later deadline is kept
    order, _ = book.extend("o1", 1000.0, T0 + 20)
    assert book.deadline("o1") == T0 + 300  # capped at created_at + max_lifetime_s
    with pytest.raises(InvalidTransition) as refused:
        book.extend("o1", 10.0, T0 + 21)
    assert refused.value.why is not None and "maximum lifetime" in str(refused.value)
    book.confirm("o1", T0 + 22)
    for call in (lambda: book.extend("o1", 10.0, T0 + 23), lambda: book.check_open("o1", T0, "x")):
        with pytest.raises(InvalidTransition):
            call()


def test_finished_orders_retire_after_their_window_once_committed():
    book = OrderBook(key_ttl_s=100.0)
    book.place("h", {"a": 1}, {"a": {"default": 1}}, T0, CREATED, T0 + 5, "kh")
    sold, _ = book.place("s", {"a": 1}, {"a": {"default": 1}}, T0, CREATED, None, None)
    book.finished(sold, 7, T0)
    assert book.retire_due(T0 + 99, committed_seq=10) == 0  # inside the window
    assert book.retire_due(T0 + 100, committed_seq=6) == 0  # its last move is not committed
    assert book.retire_due(T0 + 101, committed_seq=7) == 1
    assert "s" not in book.orders and "h" in book.orders  # an open hold never retires
    order, _ = book.confirm("h", T0 + 1)
    book.finished(order, 8, T0 + 1)
    book.remember(KeyUse("late", "extend", "h", 9.0, T0 + 50))  # a key still naming it
    assert book.retire_due(T0 + 120, committed_seq=8) == 0
    assert book.retire_due(T0 + 150, committed_seq=8) == 1 and book.orders == {}


def test_an_order_a_move_holds_does_not_retire_until_it_is_free():
    book = OrderBook(key_ttl_s=100.0)
    sold, _ = book.place("s", {"a": 1}, {"a": {"default": 1}}, T0, CREATED, None, None)
    book.finished(sold, 7, T0)
    assert book.retire_due(T0 + 101, committed_seq=7, busy={"s"}) == 0  # a late payment's
    assert book.retire_due(T0 + 102, committed_seq=7) == 1 and book.orders == {}


def test_returns_count_units_and_cancel_the_order_once_every_unit_is_back():
    book = OrderBook(key_ttl_s=100.0)
    allocation = {"a": {"n": 2, "s": 2}, "b": {"default": 1}}
    book.place("s", {"a": 4, "b": 1}, allocation, T0, CREATED, None, None)
    order, event = book.return_units("s", {"a": 3}, True, T0 + 1)  # restocked: n first
    assert event.moves == {"a": {"n": 2, "s": 1}} and order.returned == {"a": 3}
    with pytest.raises(InvalidRequest):
        book.return_units("s", {"a": 2}, True, T0 + 2)
    with pytest.raises(InvalidRequest):
        book.return_units("s", {"c": 1}, True, T0 + 2)
    assert book.orders["s"] is order  # refused: nothing changed
    order, event = book.return_units("s", {"b": 1}, False, T0 + 3)
    assert event.moves == {"b": {"default": 1}} and not event.restock
    assert (order.status, order.written_off) == ("confirmed", {"b": 1})
    cancelled, cancel = book.cancel("s", T0 + 4)  # the one unit of a left, at s
    assert cancel is not None and cancel.moves == {"a": {"s": 1}}
    assert (cancelled.status, cancelled.returned) == ("cancelled", {"a": 4, "b": 1})
    with pytest.raises(InvalidTransition):
        book.return_units("s", {"a": 1}, True, T0 + 5)
