"""A load that a crash test kills with SIGKILL: concurrent shoppers on a durable store, printing
one line per acknowledged answer (``<order id> <status>``), flushed at once. Shoppers place
direct purchases and holds, confirm, cancel, return, repeat a cancel, and let short holds lapse.

    python -m tests.integration.crash_worker DATABASE_URL
"""

from __future__ import annotations

import random
import sys

import trio

import stockade

SKUS = ["a", "b", "c"]
INITIAL = 10_000


def ack(order: stockade.Order) -> None:
    sys.stdout.write(f"{order.id} {order.status}\n")
    sys.stdout.flush()


async def shopper(engine: stockade.Engine, rng: random.Random) -> None:
    while True:
        lines = {s: rng.randint(1, 3) for s in rng.sample(SKUS, rng.randint(1, 2))}
        try:
            order = await engine.place_order(lines, hold_for=rng.choice([None, 0.05, 5.0]))
        except stockade.OutOfStock:
            await trio.sleep(0.01)
            continue
        ack(order)
        if rng.random() < 0.2:
            await trio.sleep(0.1)  # a 0.05 s hold lapses: confirm fails, cancel answers expired
        action = rng.random()
        try:
            if action < 0.4:
                ack(await engine.confirm(order.id))
                if action < 0.1:
                    ack(await engine.cancel(order.id))  # a return
            elif action < 0.6:
                ack(await engine.cancel(order.id))
                if action < 0.45:
                    ack(await engine.cancel(order.id))  # a repeat changes nothing
        except stockade.InvalidTransition:
            pass  # the hold lapsed first


async def main(database: str) -> None:
    async with stockade.open_engine(database) as engine:
        for sku in SKUS:
            try:
                await engine.stock(sku)
            except stockade.UnknownProduct:
                await engine.set_stock(sku, INITIAL)
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        async with trio.open_nursery() as nursery:
            for n in range(50):
                nursery.start_soon(shopper, engine, random.Random(n))


if __name__ == "__main__":
    trio.run(main, sys.argv[1])
