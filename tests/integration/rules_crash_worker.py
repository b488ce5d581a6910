"""A sale that a crash test kills with SIGKILL: "a" sells at most LIMIT per customer, and
concurrent shoppers of a few customers hold, buy, edit carts, confirm, cancel and return it,
printing one line per acknowledged answer (``<order id> <status>``), flushed at once.

    python -m tests.integration.rules_crash_worker DATABASE_URL
"""

from __future__ import annotations

import random
import sys

import trio

import stockade

LIMIT = 3
CUSTOMERS = [f"c{i}" for i in range(300)]


def ack(order: stockade.Order) -> None:
    sys.stdout.write(f"{order.id} {order.status}\n")
    sys.stdout.flush()


async def shopper(engine: stockade.Engine, rng: random.Random) -> None:
    while True:
        customer = rng.choice(CUSTOMERS)
        lines = {"a": rng.randint(1, 2)} | ({"b": 1} if rng.random() < 0.5 else {})
        try:
            order = await engine.place_order(
                lines, hold_for=rng.choice([None, 0.05, 5.0]), customer=customer
            )
        except (stockade.LimitExceeded, stockade.OutOfStock):
            await trio.sleep(0.01)
            continue
        ack(order)
        action = rng.random()
        try:
            if order.status == "reserved" and action < 0.3:
                ack(await engine.change_order(order.id, {**order.lines, "a": 1}))
            if action < 0.5:
                ack(await engine.confirm(order.id))
                if action < 0.2:
                    ack(await engine.cancel(order.id))  # a return
            elif action < 0.8:
                ack(await engine.cancel(order.id))
        except (stockade.InvalidTransition, stockade.LimitExceeded):
            pass  # the hold lapsed first


async def main(database: str) -> None:
    async with stockade.open_engine(database) as engine:
        for sku in ("a", "b"):
            try:
                await engine.stock(sku)
            except stockade.UnknownProduct:
                await engine.set_stock(sku, 100_000)
                if sku == "a":
                    await engine.set_rules("a", per_customer=LIMIT)
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        async with trio.open_nursery() as nursery:
            for n in range(30):
                nursery.start_soon(shopper, engine, random.Random(n))


if __name__ == "__main__":
    trio.run(main, sys.argv[1])
