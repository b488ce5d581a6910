"""A flash sale with payments, in real time, that checks itself.

    python -m bench flash-sale [--target embedded|http|both] [--shoppers N] [--units N]
                               [--hold-s S] [--fail P] [--abandon P] [--late P] [--quick]

``shoppers`` arrive in a burst of ``burst_s`` seconds for ``units`` units of one product. Each
places a hold of ``hold_s`` seconds; a shopper told "out of stock" comes back later (stock
freed by failed or abandoned payments returns) up to ``retries`` times, then gives up. A
shopper with a hold then pays: the payment succeeds (confirm), fails (cancel, share ``fail``),
never arrives (share ``abandon``: the hold expires), or arrives after the hold expired (share
``late``: the confirm must be refused). After the last shopper, the sale waits for every hold's
expiry and checks, against the shop itself:

* units sold <= units, and every unit is either sold or back on hand (none left reserved);
* each order's final status is what its shopper was told (confirmed, cancelled, expired);
* no confirm sent after its hold's ``expires_at`` was accepted, and every late payment was
  refused.

It runs against the embedded engine (memory, or ``--database``) and against ``stockade serve``
over HTTP (durable SQLite), and prints a report per target. Exits 1 if a check fails.
"""

from __future__ import annotations

import abc
import argparse
import datetime
import random
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

import stockade
from bench.httpclient import HttpConnection, HttpError
from bench.runner import percentile
from bench.server import Server

__all__ = ["Sale", "SaleConfig", "Shop", "main", "run_sale"]

SKU = "flash-drop"
#: a confirm is judged late by the shop's clock, the sale's sending time by this process's:
#: one machine, but allow for the two reading it a moment apart
CLOCK_SLACK_S = 0.01

T = TypeVar("T")


@dataclass(frozen=True)
class SaleConfig:
    shoppers: int = 10_000
    units: int = 1_000
    hold_s: int = 5
    burst_s: float = 0.5
    fail: float = 0.2
    abandon: float = 0.1
    late: float = 0.05
    retries: int = 3
    seed: int = 1

    def check(self) -> None:
        if self.shoppers < 1 or self.units < 1 or self.hold_s < 1:
            raise SystemExit("shoppers, units and hold seconds must be at least 1")
        shares = (self.fail, self.abandon, self.late)
        if any(not 0 <= s <= 1 for s in shares) or sum(shares) > 1:
            raise SystemExit("--fail, --abandon and --late are shares from 0 to 1, summing to <= 1")


class Shop(abc.ABC):
    """What a shopper can do; one implementation per target."""

    @abc.abstractmethod
    async def hold(self, hold_s: int) -> tuple[str, float] | None:
        """Hold one unit: (order id, expires_at as UNIX time), or None when out of stock."""

    @abc.abstractmethod
    async def confirm(self, order_id: str) -> bool:
        """Pay: True when confirmed, False when refused (the hold expired)."""

    @abc.abstractmethod
    async def cancel(self, order_id: str) -> str:
        """Cancel; returns the order's status after it (``expired`` when the hold had already
        lapsed: cancelling is idempotent and never an error)."""

    @abc.abstractmethod
    async def status(self, order_id: str) -> str: ...

    @abc.abstractmethod
    async def level(self) -> tuple[int, int]:
        """(on_hand, reserved) of the product."""


@dataclass
class Sale:
    """What happened, as the shoppers saw it."""

    config: SaleConfig
    target: str
    started: float = 0.0
    first_refusal_s: float | None = None
    sold_out_s: float | None = None
    holds: int = 0
    refusals: int = 0
    gave_up: int = 0
    overloaded: int = 0
    sold: int = 0
    #: order id -> the status its shopper was told it would end in
    expected: dict[str, str] = field(default_factory=dict)
    fates: Counter[str] = field(default_factory=Counter)
    late_refused: int = 0
    timely_refused: int = 0
    #: order ids confirmed although the confirm was sent after expires_at
    confirmed_late: list[str] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    last_expiry: float = 0.0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    latency_note: str = ""
    #: HTTP: how long each request held its connection (the server's share of the latency)
    request_latencies_s: list[float] = field(default_factory=list)


async def timed(sale: Sale, call: Awaitable[T]) -> T:
    """Await ``call``, recording how long it took."""
    start = time.perf_counter()
    try:
        return await call
    finally:
        sale.latencies_s.append(time.perf_counter() - start)


async def shopper(shop: Shop, sale: Sale, rng: random.Random) -> None:
    config = sale.config
    held = None
    for attempt in range(config.retries + 1):
        try:
            held = await timed(sale, shop.hold(config.hold_s))
        except stockade.Overloaded:
            sale.overloaded += 1
        if held is not None:
            break
        sale.refusals += 1
        if sale.first_refusal_s is None:
            sale.first_refusal_s = time.time() - sale.started
        if attempt < config.retries:  # come back once freed units may be on sale again
            await anyio.sleep(rng.uniform(0.5, 1.0) * config.hold_s)
    if held is None:
        sale.gave_up += 1
        return
    order_id, expires_at = held
    sale.holds += 1
    sale.last_expiry = max(sale.last_expiry, expires_at)
    draw = rng.random()
    if draw < config.fail:
        fate = "fails"
    elif draw < config.fail + config.abandon:
        fate = "abandoned"
    elif draw < config.fail + config.abandon + config.late:
        fate = "late"
    else:
        fate = "pays"
    sale.fates[fate] += 1
    if fate == "abandoned":
        sale.expected[order_id] = "expired"
        return
    if fate == "late":
        await anyio.sleep(max(0.0, expires_at - time.time()) + rng.uniform(0.1, 0.5))
    else:  # the payment provider answers within the first half of the hold
        await anyio.sleep(rng.uniform(0.05, 0.5) * config.hold_s)
    if fate == "fails":
        sale.expected[order_id] = await timed(sale, shop.cancel(order_id))
        return
    sent_at = time.time()
    if await timed(sale, shop.confirm(order_id)):
        sale.expected[order_id] = "confirmed"
        sale.sold += 1
        if sent_at > expires_at + CLOCK_SLACK_S:
            sale.confirmed_late.append(order_id)
        if sale.sold == config.units:
            sale.sold_out_s = time.time() - sale.started
    else:
        sale.expected[order_id] = "expired"
        if fate == "late":
            sale.late_refused += 1
        else:
            sale.timely_refused += 1


async def run_sale(shop: Shop, config: SaleConfig, target: str) -> Sale:
    """Run the sale against ``shop`` (stocked with ``config.units``), wait for every hold to
    end, and check the outcome against the shop."""
    sale = Sale(config, target)
    rng = random.Random(config.seed)
    sale.started = time.time()
    start = time.perf_counter()

    async def one() -> None:
        try:
            await shopper(shop, sale, rng)
        except (stockade.StockadeError, HttpError) as exc:
            sale.errors.append(f"{type(exc).__name__}: {exc}")

    # Shoppers arrive spread over the burst, each task started at its arrival time: 10,000
    # tasks started at once and sleeping until then cost the process ~0.3 s in one go.
    arrivals = sorted(rng.uniform(0, config.burst_s) for _ in range(config.shoppers))
    opened = anyio.current_time()
    async with anyio.create_task_group() as tg:
        for arrival in arrivals:
            await anyio.sleep_until(opened + arrival)  # a checkpoint even when late: the
            tg.start_soon(one)  # shoppers already in the shop run between arrivals
    sale.seconds = time.perf_counter() - start
    # let every hold that is still open reach its expiry (the shop expires it on its own)
    await anyio.sleep(max(0.0, sale.last_expiry - time.time()) + 0.5)
    sale.problems = await check(shop, sale)
    return sale


async def check(shop: Shop, sale: Sale) -> list[str]:
    config = sale.config
    problems = [f"{len(sale.errors)} calls failed, e.g. {sale.errors[0]}"] if sale.errors else []
    on_hand, reserved = await shop.level()
    if sale.sold > config.units:
        problems.append(f"OVERSOLD: {sale.sold} units sold of {config.units}")
    if reserved != 0:
        problems.append(f"{reserved} units still reserved after every hold ended")
    if on_hand + sale.sold != config.units:
        problems.append(
            f"units lost or invented: {on_hand} on hand + {sale.sold} sold != {config.units}"
        )
    wrong = Counter[str]()
    for order_id, expected in sale.expected.items():
        status = await shop.status(order_id)
        if status != expected:
            wrong[f"{expected} -> {status}"] += 1
    if wrong:
        problems.append(
            f"orders whose final status differs from what shoppers were told: {dict(wrong)}"
        )
    if sale.confirmed_late:
        problems.append(
            f"{len(sale.confirmed_late)} orders confirmed after their hold expired, "
            f"e.g. {sale.confirmed_late[0]}"
        )
    if sale.late_refused != sale.fates["late"]:
        problems.append(f"{sale.fates['late'] - sale.late_refused} late payments were accepted")
    return problems


def print_report(sale: Sale) -> None:
    config = sale.config
    latencies = sorted(sale.latencies_s)

    def at(seconds: float | None) -> str:
        return "never" if seconds is None else f"{seconds:.2f} s"

    print(
        f"\nflash sale, {sale.target}: {config.shoppers:,} shoppers for {config.units:,} units, "
        f"holds of {config.hold_s} s, burst {config.burst_s} s; payments fail "
        f"{config.fail:.0%}, never arrive {config.abandon:.0%}, arrive late {config.late:.0%}"
    )
    print(f"  units sold              {sale.sold:,} of {config.units:,}")
    print(f"  first 'out of stock'    {at(sale.first_refusal_s)} after the start")
    print(f"  all units sold          {at(sale.sold_out_s)} after the start")
    print(
        f"  holds placed            {sale.holds:,} ({sale.refusals:,} refusals, "
        f"{sale.gave_up:,} shoppers gave up, {sale.overloaded:,} overloaded)"
    )
    ended = Counter(sale.expected.values())
    print(
        f"  holds cancelled         {ended['cancelled']:,} ({sale.fates['fails']:,} failed "
        f"payments, {sale.fates['fails'] - ended['cancelled']:,} of them after the hold expired)"
    )
    print(
        f"  holds expired           {ended['expired']:,} ({sale.fates['abandoned']:,} abandoned, "
        f"{sale.fates['late']:,} paid late)"
    )
    print(
        f"  late payments refused   {sale.late_refused:,} of {sale.fates['late']:,}"
        f" (and {sale.timely_refused:,} payments sent in time but judged late)"
    )
    print(
        f"  latency                 {len(latencies):,} calls as shoppers saw them: p50 "
        f"{percentile(latencies, 0.5) * 1000:.1f} ms, p99 "
        f"{percentile(latencies, 0.99) * 1000:.1f} ms, peak "
        f"{(latencies[-1] if latencies else 0) * 1000:.1f} ms{sale.latency_note}"
    )
    if sale.request_latencies_s:
        served = sorted(sale.request_latencies_s)
        print(
            f"  request latency         on the connection: p50 {percentile(served, 0.5) * 1000:.1f}"
            f" ms, p99 {percentile(served, 0.99) * 1000:.1f} ms, peak {served[-1] * 1000:.1f} ms"
        )
    print(f"  sale lasted             {sale.seconds:.1f} s (then waited for the last expiry)")
    print(
        "  verified: sold <= units, every unit sold or back on hand, statuses as told, "
        "nothing confirmed late"
        if not sale.problems
        else "  FAILED:\n    " + "\n    ".join(sale.problems)
    )


# -- targets ----------------------------------------------------------------------------------


class EngineShop(Shop):
    def __init__(self, engine: stockade.Engine) -> None:
        self.engine = engine

    async def hold(self, hold_s: int) -> tuple[str, float] | None:
        try:
            order = await self.engine.place_order({SKU: 1}, hold_for=hold_s)
        except stockade.OutOfStock:
            return None
        assert order.expires_at is not None
        return order.id, order.expires_at.timestamp()

    async def confirm(self, order_id: str) -> bool:
        try:
            await self.engine.confirm(order_id)
        except stockade.InvalidTransition:
            return False
        return True

    async def cancel(self, order_id: str) -> str:
        return str((await self.engine.cancel(order_id)).status)

    async def status(self, order_id: str) -> str:
        return str((await self.engine.get_order(order_id)).status)

    async def level(self) -> tuple[int, int]:
        level = await self.engine.stock(SKU)
        return level.on_hand, level.reserved


class HttpShop(Shop):
    """Shoppers share ``connections`` keep-alive connections; payments (the payment
    provider's webhooks) come through a pool of their own, as they would."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.request_latencies_s: list[float] = []
        self.pools: dict[
            str,
            tuple[
                MemoryObjectSendStream[HttpConnection], MemoryObjectReceiveStream[HttpConnection]
            ],
        ] = {}

    @asynccontextmanager
    async def open(self, shoppers: int, payments: int) -> AsyncIterator[HttpShop]:
        opened = []
        try:
            for name, size in (("shop", shoppers), ("pay", payments)):
                send, receive = anyio.create_memory_object_stream[HttpConnection](size)
                self.pools[name] = (send, receive)
                for _ in range(size):
                    conn = await HttpConnection.open(
                        self.server.host, self.server.port, self.server.token
                    )
                    opened.append(conn)
                    send.send_nowait(conn)
            yield self
        finally:
            for conn in opened:
                await conn.aclose()

    async def call(self, pool: str, method: str, path: str, body: object = None) -> Any:
        send, receive = self.pools[pool]
        conn = await receive.receive()
        start = time.perf_counter()
        try:
            answer = await conn.request(method, path, body)
            self.request_latencies_s.append(time.perf_counter() - start)
        finally:
            send.send_nowait(conn)
        return answer

    async def hold(self, hold_s: int) -> tuple[str, float] | None:
        body = {"lines": [{"sku": SKU, "qty": 1}], "hold_seconds": hold_s}
        answer = await self.call("shop", "POST", "/v1/orders", body)
        if answer.status == 409:
            return None
        if answer.status == 503:
            raise stockade.Overloaded("503 from the server")
        order = self.expect(answer, 201)
        return order["id"], datetime.datetime.fromisoformat(order["expires_at"]).timestamp()

    async def confirm(self, order_id: str) -> bool:
        answer = await self.call("pay", "POST", f"/v1/orders/{order_id}/confirm")
        if answer.status == 409:
            return False
        self.expect(answer, 200)
        return True

    async def cancel(self, order_id: str) -> str:
        order = self.expect(await self.call("pay", "POST", f"/v1/orders/{order_id}/cancel"), 200)
        return str(order["status"])

    async def status(self, order_id: str) -> str:
        order = self.expect(await self.call("shop", "GET", f"/v1/orders/{order_id}"), 200)
        return str(order["status"])

    async def level(self) -> tuple[int, int]:
        level = self.expect(await self.call("shop", "GET", f"/v1/products/{SKU}"), 200)
        return int(level["on_hand"]), int(level["reserved"])

    @staticmethod
    def expect(answer: Any, status: int) -> Any:
        if answer.status != status:
            raise HttpError(f"expected {status}, got {answer.status}: {answer.body[:200]!r}")
        return answer.json()


async def sale_embedded(config: SaleConfig, database: str | None) -> Sale:
    async with stockade.open_engine(database) as engine:
        await engine.set_stock(SKU, config.units)
        return await run_sale(EngineShop(engine), config, f"embedded ({database or 'memory'})")


def sale_http(config: SaleConfig, connections: int) -> Sale:
    with tempfile.TemporaryDirectory(prefix="stockade-flash-") as workdir:
        server = Server(Path(workdir), "flash-token")
        server.start()
        try:

            async def main() -> Sale:
                async with HttpShop(server).open(connections, max(8, connections // 4)) as shop:
                    answer = await shop.call(
                        "shop", "PUT", f"/v1/products/{SKU}", {"on_hand": config.units}
                    )
                    shop.expect(answer, 201)
                    sale = await run_sale(shop, config, "HTTP (stockade serve, durable SQLite)")
                    sale.latency_note = f" (incl. waiting for one of {connections} connections)"
                    sale.request_latencies_s = shop.request_latencies_s
                    return sale

            return anyio.run(main, backend="asyncio")
        finally:
            server.stop()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench flash-sale", description="A flash sale with payments, self-checking."
    )
    defaults = SaleConfig()
    parser.add_argument("--target", choices=["embedded", "http", "both"], default="both")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1,000 shoppers for 100 units, holds of 1 s (a smoke run)",
    )
    parser.add_argument("--shoppers", type=int)
    parser.add_argument("--units", type=int)
    parser.add_argument("--hold-s", type=int, help=f"hold length (default {defaults.hold_s})")
    parser.add_argument("--fail", type=float, default=defaults.fail)
    parser.add_argument("--abandon", type=float, default=defaults.abandon)
    parser.add_argument("--late", type=float, default=defaults.late)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--database", help="embedded target's database URL (default memory)")
    parser.add_argument(
        "--connections", type=int, default=64, help="HTTP target: shoppers' keep-alive connections"
    )
    args = parser.parse_args(argv)
    quick = SaleConfig(shoppers=1_000, units=100, hold_s=1, burst_s=0.2)
    base = quick if args.quick else defaults
    config = SaleConfig(
        shoppers=base.shoppers if args.shoppers is None else args.shoppers,
        units=base.units if args.units is None else args.units,
        hold_s=base.hold_s if args.hold_s is None else args.hold_s,
        burst_s=base.burst_s,
        fail=args.fail,
        abandon=args.abandon,
        late=args.late,
        seed=args.seed,
    )
    config.check()
    sales = []
    if args.target in ("embedded", "both"):
        sales.append(anyio.run(sale_embedded, config, args.database, backend="trio"))
        print_report(sales[-1])
    if args.target in ("http", "both"):
        sales.append(sale_http(config, args.connections))
        print_report(sales[-1])
    return 1 if any(sale.problems for sale in sales) else 0
