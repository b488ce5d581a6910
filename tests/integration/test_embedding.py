"""The engine contract through the thread handles: asyncio tasks, and blocking host threads."""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import threading
from collections.abc import Callable, Coroutine
from typing import Any, assert_type

import pytest
import trio.testing

import stockade
from stockade import (
    AsyncioEngine,
    BlockingEngine,
    Engine,
    EngineClosed,
    EngineThread,
    IdempotencyConflict,
    InvalidRequest,
    InvalidTransition,
    MemoryStore,
    OutOfStock,
    StockLevel,
)
from tests.books import assert_books_balance

HANDLES = ["asyncio", "blocking"]


class ThreadedCalls:
    """Drives a BlockingEngine from a pool of host threads, exposed as awaitables so that one
    async contract suite covers both handles."""

    def __init__(self, engine: BlockingEngine, pool: concurrent.futures.Executor) -> None:
        self._engine = engine
        self._pool = pool

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._engine, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, lambda: method(*args, **kwargs))

        return call


def run_contract(
    handle: str,
    scenario: Callable[[Any, EngineThread], Coroutine[Any, Any, None]],
    **options: Any,
) -> EngineThread:
    thread = EngineThread(**options)
    thread.start()
    try:

        async def main() -> None:
            if handle == "asyncio":
                await scenario(AsyncioEngine(thread), thread)
            else:
                with concurrent.futures.ThreadPoolExecutor(16) as pool:
                    await scenario(ThreadedCalls(BlockingEngine(thread), pool), thread)

        asyncio.run(main())
    finally:
        thread.stop()
    return thread


@pytest.mark.parametrize("handle", HANDLES)
def test_last_unit_rush(handle):
    async def scenario(engine, thread):
        await engine.set_stock("hot", 50)
        results = await asyncio.gather(
            *(engine.place_order({"hot": 1}) for _ in range(400)), return_exceptions=True
        )
        sold = [r for r in results if isinstance(r, stockade.Order)]
        refused = [r for r in results if isinstance(r, OutOfStock)]
        assert (len(sold), len(refused)) == (50, 350)
        assert await engine.stock("hot") == StockLevel("hot", 0, 0, 0)

    run_contract(handle, scenario)


@pytest.mark.parametrize("handle", HANDLES)
def test_all_or_nothing_and_errors_are_the_engines(handle):
    async def scenario(engine, thread):
        await engine.set_stock("a", 5)
        await engine.set_stock("b", 1)
        with pytest.raises(OutOfStock) as caught:
            await engine.place_order({"a": 2, "b": 2})
        assert caught.value.shortages == {"b": (2, 1)}
        assert (await engine.stock("a")).available == 5
        with pytest.raises(InvalidRequest):
            await engine.place_order({"a": 0})
        with pytest.raises(stockade.UnknownProduct):
            await engine.stock("nope")

    run_contract(handle, scenario)


@pytest.mark.parametrize("handle", HANDLES)
def test_idempotency_from_many_callers(handle):
    async def scenario(engine, thread):
        await engine.set_stock("a", 10)
        orders = await asyncio.gather(
            *(engine.place_order({"a": 2}, idempotency_key="cart-1") for _ in range(40))
        )
        assert len({o.id for o in orders}) == 1
        assert (await engine.stock("a")).on_hand == 8
        with pytest.raises(IdempotencyConflict):
            await engine.place_order({"a": 1}, idempotency_key="cart-1")

    run_contract(handle, scenario)


@pytest.mark.parametrize("handle", HANDLES)
def test_late_payments_and_returns_through_the_handles(handle):
    clock = trio.testing.MockClock()

    async def scenario(engine, thread):
        await engine.set_stock("a", 5)
        order = await engine.place_order({"a": 3}, hold_for=30)
        thread.run_sync(clock.jump, 31)
        confirmed = await engine.confirm(order.id, late=True)
        assert confirmed.status == "confirmed"
        back = await engine.return_units(order.id, {"a": 1}, idempotency_key="rma")
        assert back.returned == {"a": 1}
        assert await engine.return_units(order.id, {"a": 1}, idempotency_key="rma") == back
        lost = await engine.return_units(order.id, {"a": 2}, restock=False)
        assert (lost.status, lost.written_off) == ("cancelled", {"a": 2})
        assert await engine.stock("a") == StockLevel("a", 3, 0, 3)

    run_contract(handle, scenario, clock=clock)


@pytest.mark.parametrize("handle", HANDLES)
def test_expiry_on_the_engine_clock(handle):
    clock = trio.testing.MockClock()

    async def scenario(engine, thread):
        await engine.set_stock("a", 3)
        order = await engine.place_order({"a": 2}, hold_for=30)
        thread.run_sync(clock.jump, 29)
        assert (await engine.get_order(order.id)).status == "reserved"
        thread.run_sync(clock.jump, 2)
        with pytest.raises(InvalidTransition):
            await engine.confirm(order.id)
        assert await engine.stock("a") == StockLevel("a", 3, 0, 3)

    run_contract(handle, scenario, clock=clock)


def test_cancelled_asyncio_callers_never_leave_stock_taken():
    store = MemoryStore()
    cancelled = 0

    async def scenario(engine, thread):
        nonlocal cancelled
        await engine.set_stock("a", 1000)
        await engine.set_stock("b", 1000)

        async def buy():
            await engine.place_order({"a": 1, "b": 1}, hold_for=60)

        tasks = [asyncio.create_task(buy()) for _ in range(200)]
        await asyncio.sleep(0)
        for task in tasks[::2]:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        cancelled = sum(isinstance(r, asyncio.CancelledError) for r in results)

    run_contract("asyncio", scenario, store=store)
    # After stop every call the cancelled tasks started has finished and is committed.
    assert cancelled == 100
    levels = {
        sku: StockLevel(sku, on_hand, reserved, on_hand - reserved)
        for sku, (on_hand, reserved) in store.state.products.items()
    }
    orders = list(store.state.orders.values())
    assert len(orders) == 200  # a cancelled caller's order is still whole
    assert_books_balance(levels, orders, initial={"a": 1000, "b": 1000})


def test_threads_that_give_up_never_leave_stock_taken():
    store = MemoryStore()
    with stockade.run_in_thread(store=store, timeout=0.0) as impatient:
        BlockingEngine(impatient.thread).set_stock("a", 1000)
        gave_up = 0

        def buyer():
            nonlocal gave_up
            for _ in range(20):
                try:
                    impatient.place_order({"a": 1})
                except TimeoutError:
                    gave_up += 1

        threads = [threading.Thread(target=buyer) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    # Leaving the block finished every call the threads gave up on and committed it.
    assert gave_up > 0
    on_hand, reserved = store.state.products["a"]
    orders = list(store.state.orders.values())
    assert len(orders) == 160 == 1000 - on_hand
    level = StockLevel("a", on_hand, reserved, on_hand - reserved)
    assert_books_balance({"a": level}, orders, initial={"a": 1000})


def test_shutdown_from_the_host_flushes_the_journal():
    store = MemoryStore()
    thread = EngineThread(store=store, durability="fast")
    thread.start()
    engine = BlockingEngine(thread)
    engine.set_stock("a", 10)
    futures = [thread.submit(Engine.place_order, {"a": 1}) for _ in range(10)]
    thread.stop()
    assert all(f.result().status == "confirmed" for f in futures)
    assert store.state.products["a"] == (0, 0)
    assert len(store.state.orders) == 10
    with pytest.raises(EngineClosed):
        engine.stock("a")
    assert not thread.running


def test_a_crash_in_the_engine_thread_surfaces_in_the_host():
    class BrokenStore(MemoryStore):
        async def commit(self, batch):
            raise RuntimeError("corrupt batch")

    thread = EngineThread(store=BrokenStore(), durability="fast")
    thread.start()
    engine = BlockingEngine(thread)
    engine.set_stock("a", 1)  # fast: answered before the writer fails
    thread._thread.join(5)  # type: ignore[union-attr]
    with pytest.raises(EngineClosed) as closed:
        engine.stock("a")
    assert isinstance(closed.value.__cause__, RuntimeError)
    with pytest.raises(RuntimeError, match="corrupt batch"):
        thread.stop()


def test_start_up_errors_surface_and_bad_use_is_refused():
    with pytest.raises(InvalidRequest), stockade.run_in_thread("mysql://nope"):
        pass  # pragma: no cover
    thread = EngineThread()
    with pytest.raises(EngineClosed):
        thread.submit(Engine.stock, "a")
    thread.start()
    with pytest.raises(InvalidRequest, match="already started"):
        thread.start()
    thread.stop()
    thread.stop()  # idempotent


def test_asyncio_context_manager_starts_and_stops_off_the_loop():
    store = MemoryStore()

    async def main():
        async with stockade.open_asyncio_engine(store=store) as engine:
            await engine.set_stock("a", 2)
            await engine.place_order({"a": 1})
            assert (await engine.statistics()).placed == 1

    asyncio.run(main())
    assert store.state.products["a"] == (1, 0)


def test_calls_through_the_thread_are_typed() -> None:
    # mypy checks this file: a wrong argument or result type below would fail `mypy`, and so
    # would each `type: ignore` that stopped being needed (warn_unused_ignores).
    with stockade.run_in_thread(store=MemoryStore()) as engine:
        assert_type(engine.set_stock("a", 3), StockLevel)
        order = assert_type(engine.place_order({"a": 1}, hold_for=60), stockade.Order)
        thread = engine.thread
        future = thread.submit(Engine.confirm, order.id)
        assert_type(future, concurrent.futures.Future[stockade.Order])
        assert future.result(5).status == "confirmed"
        assert assert_type(thread.call(Engine.stock, "a"), StockLevel).on_hand == 2
        assert assert_type(engine.statistics(), stockade.EngineStatistics).placed == 1
        with pytest.raises(InvalidRequest):
            thread.call(Engine.stock, 1)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            thread.call(Engine.place_order, {"a": 1}, hold=60)  # type: ignore[call-arg]
        with pytest.raises(TypeError):
            engine.place_order({"a": 1}, 60)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        stockade.run_in_thread(mailbox=5)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("opener", "own"),
    [
        (EngineThread.__init__, {"self", "clock"}),
        (stockade.run_in_thread, {"timeout", "clock"}),
        (stockade.open_asyncio_engine, {"clock"}),
    ],
)
def test_the_handles_take_open_engines_arguments(opener, own):
    def keywords(fn: Callable[..., Any]) -> dict[str, tuple[object, object]]:
        parameters = inspect.signature(fn).parameters.values()
        return {p.name: (p.default, p.annotation) for p in parameters if p.name not in own}

    assert keywords(opener) == keywords(stockade.open_engine)


def test_the_asyncio_handle_reads_the_change_feed_and_a_cancelled_wait_loses_nothing():
    async def main() -> None:
        store = MemoryStore(keep_movements=True)
        async with stockade.open_asyncio_engine(store=store) as engine:
            await engine.set_stock("sku-1", 10)
            events = engine.events(0, ["order.placed"])
            waiting = asyncio.create_task(events.__anext__())
            await asyncio.sleep(0.05)  # waiting on the engine thread: nothing placed yet
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            first = await engine.place_order({"sku-1": 1})
            second = await engine.place_order({"sku-1": 2})
            got = [await events.__anext__(), await events.__anext__()]
            assert [e.data["id"] for e in got] == [first.id, second.id]
            assert events.cursor == got[-1].seq

    asyncio.run(main())


def test_the_blocking_handle_reads_the_change_feed_and_a_timeout_loses_nothing():
    store = MemoryStore(keep_movements=True)
    with stockade.run_in_thread(store=store, timeout=0.2) as engine:
        engine.set_stock("sku-1", 10)
        events = engine.events(0, ["order.placed"])
        with pytest.raises(TimeoutError):
            next(events)  # nothing placed yet: the step times out, the fetch goes on
        first = engine.place_order({"sku-1": 1})
        second = engine.place_order({"sku-1": 2})
        got = [next(events), next(events)]
        assert [e.data["id"] for e in got] == [first.id, second.id]
        assert events.cursor == got[-1].seq
        with pytest.raises(stockade.InvalidRequest):
            next(engine.events(0, ["no.such.type"]))
        bad = engine.events(-1)
        for _ in range(2):  # an error is raised again, not a hang
            with pytest.raises(stockade.InvalidRequest):
                next(bad)
