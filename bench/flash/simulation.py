"""The shoppers and their payments, in real time, against any :class:`~bench.flash.sale.Shop`.

:func:`run_sale` blocks for the whole sale and then until every hold has ended (its last
expiry plus half a second), so a default sale takes tens of seconds; it runs on trio or asyncio
(anyio) and can be cancelled at any await, leaving the shop as the shoppers left it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable
from typing import TypeVar

import anyio

import stockade
from bench.flash.checks import check
from bench.flash.sale import EXTRA, SKU, Sale, SaleConfig, Shop
from bench.httpclient import HttpError

__all__ = ["CLOCK_SLACK_S", "fill_cart", "run_sale", "shopper"]

#: a confirm is judged late by the shop's clock, the sale's sending time by this process's:
#: one machine, but allow for the two reading it a moment apart
CLOCK_SLACK_S = 0.01

T = TypeVar("T")


async def timed(sale: Sale, call: Awaitable[T]) -> T:
    """Await ``call``, recording how long it took."""
    start = time.perf_counter()
    try:
        return await call
    finally:
        sale.latencies_s.append(time.perf_counter() - start)


async def shopper(shop: Shop, sale: Sale, rng: random.Random) -> None:
    """One shopper: hold a unit (coming back after a refusal, up to ``retries`` times), with
    carts fill the cart and extend the hold (:func:`fill_cart`), then pay, fail to pay, never
    pay, or pay late, as drawn; what the shop answered goes in ``sale``. Blocks for its waits:
    up to ``hold_s`` per retry, then up to ``hold_s`` and half a second more before paying."""
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
    lines = {SKU: 1}
    if config.carts and shop.carts:
        lines, expires_at = await fill_cart(shop, sale, rng, order_id, expires_at)
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
        sale.sold += lines[SKU]
        sale.sold_extra += lines.get(EXTRA, 0)
        if sent_at > expires_at + CLOCK_SLACK_S:
            sale.confirmed_late.append(order_id)
        if sale.sold >= config.units and sale.sold_out_s is None:
            sale.sold_out_s = time.time() - sale.started
    else:
        sale.expected[order_id] = "expired"
        if fate == "late":
            sale.late_refused += 1
        else:
            sale.timely_refused += 1


async def fill_cart(
    shop: Shop, sale: Sale, rng: random.Random, order_id: str, expires_at: float
) -> tuple[dict[str, int], float]:
    """A shopper's cart between the hold and the payment: the accessory goes in (a quarter of
    shoppers also take a second unit); three in ten then change their mind, one line down (the
    second unit back, or else the accessory out); then the hold is extended once. An edit the
    shop refuses leaves the cart as it was. Returns the cart's lines and its deadline; blocks
    for the shopper's thinking, a few hundredths of the hold before each edit."""
    hold_s = sale.config.hold_s
    lines = {SKU: 1}
    second_thoughts = rng.random() < 0.3
    wanted = {SKU: 2 if rng.random() < 0.25 else 1, EXTRA: 1}
    while True:
        await anyio.sleep(rng.uniform(0.01, 0.05) * hold_s)
        if await timed(sale, shop.change(order_id, wanted)):
            lines = wanted
            sale.edits += 1
        else:
            sale.edits_refused += 1
        if not second_thoughts or len(lines) == 1:
            break
        second_thoughts = False
        wanted = {**lines, SKU: 1} if lines[SKU] > 1 else {SKU: lines[SKU]}
    extended = await timed(sale, shop.extend(order_id, hold_s))
    if extended is None:
        sale.extend_refused += 1
    else:
        sale.extended += 1
        expires_at = max(expires_at, extended)
    return lines, expires_at


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
