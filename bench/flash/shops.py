"""The flash sale's targets: the embedded engine, and ``stockade serve`` over HTTP.

Each ``sale_*`` function opens its target, stocks the one product and runs the sale against it
(see :func:`~bench.flash.simulation.run_sale` for how long that blocks).
"""

from __future__ import annotations

import datetime
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

import stockade
from bench.flash.sale import EXTRA, SKU, Sale, SaleConfig, Shop
from bench.flash.simulation import run_sale
from bench.httpclient import HttpConnection, HttpError
from bench.server import Server

__all__ = ["SKU", "EngineShop", "HttpShop", "sale_embedded", "sale_http"]

#: a product of its own, one unit, for asking the server whether it has carts
PROBE = "flash-probe"
#: what the HTTP report says when the server has no cart routes
NO_CART_ROUTES = (
    "skipped over HTTP: the server has no PATCH /v1/orders/{id} and POST /v1/orders/{id}/extend yet"
)


class EngineShop(Shop):
    carts = True

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

    async def level(self, sku: str = SKU) -> tuple[int, int]:
        level = await self.engine.stock(sku)
        return level.on_hand, level.reserved

    async def change(self, order_id: str, lines: dict[str, int]) -> bool:
        try:
            await self.engine.change_order(order_id, lines)
        except (stockade.OutOfStock, stockade.InvalidTransition):
            return False
        return True

    async def extend(self, order_id: str, hold_s: int) -> float | None:
        try:
            order = await self.engine.extend(order_id, hold_s)
        except stockade.InvalidTransition:
            return None
        assert order.expires_at is not None
        return order.expires_at.timestamp()


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

    async def level(self, sku: str = SKU) -> tuple[int, int]:
        level = self.expect(await self.call("shop", "GET", f"/v1/products/{sku}"), 200)
        return int(level["on_hand"]), int(level["reserved"])

    async def change(self, order_id: str, lines: dict[str, int]) -> bool:
        body = {"lines": [{"sku": sku, "qty": qty} for sku, qty in lines.items()]}
        answer = await self.call("shop", "PATCH", f"/v1/orders/{order_id}", body)
        if answer.status == 409:
            return False
        self.expect(answer, 200)
        return True

    async def extend(self, order_id: str, hold_s: int) -> float | None:
        body = {"hold_seconds": hold_s}
        answer = await self.call("shop", "POST", f"/v1/orders/{order_id}/extend", body)
        if answer.status == 409:
            return None
        order = self.expect(answer, 200)
        return datetime.datetime.fromisoformat(order["expires_at"]).timestamp()

    async def ask_for_carts(self) -> bool:
        """Whether the server changes and extends holds: a hold on :data:`PROBE` is edited (to
        the same line), extended and cancelled. Sets :attr:`carts`."""
        answer = await self.call("shop", "PUT", f"/v1/products/{PROBE}", {"on_hand": 1})
        self.expect(answer, 201)
        body = {"lines": [{"sku": PROBE, "qty": 1}], "hold_seconds": 60}
        order_id = self.expect(await self.call("shop", "POST", "/v1/orders", body), 201)["id"]
        path = f"/v1/orders/{order_id}"
        edited = await self.call("shop", "PATCH", path, {"lines": body["lines"]})
        extended = await self.call("shop", "POST", f"{path}/extend", {"hold_seconds": 60})
        self.expect(await self.call("pay", "POST", f"{path}/cancel"), 200)
        self.carts = edited.status == 200 and extended.status == 200
        return self.carts

    @staticmethod
    def expect(answer: Any, status: int) -> Any:
        if answer.status != status:
            raise HttpError(f"expected {status}, got {answer.status}: {answer.body[:200]!r}")
        return answer.json()


async def sale_embedded(config: SaleConfig, database: str | None) -> Sale:
    async with stockade.open_engine(database) as engine:
        await engine.set_stock(SKU, config.units)
        if config.carts:
            await engine.set_stock(EXTRA, config.extra_units)
        return await run_sale(EngineShop(engine), config, f"embedded ({database or 'memory'})")


def sale_http(config: SaleConfig, connections: int, workers: int = 1) -> Sale:
    """The sale against ``stockade serve --workers workers`` (durable SQLite)."""
    with tempfile.TemporaryDirectory(prefix="stockade-flash-") as workdir:
        server = Server(Path(workdir), "flash-token", args=("--workers", str(workers)))
        server.start()
        try:

            async def main() -> Sale:
                async with HttpShop(server).open(connections, max(8, connections // 4)) as shop:
                    answer = await shop.call(
                        "shop", "PUT", f"/v1/products/{SKU}", {"on_hand": config.units}
                    )
                    shop.expect(answer, 201)
                    skipped = ""
                    if config.carts:
                        body = {"on_hand": config.extra_units}
                        answer = await shop.call("shop", "PUT", f"/v1/products/{EXTRA}", body)
                        shop.expect(answer, 201)
                        skipped = "" if await shop.ask_for_carts() else NO_CART_ROUTES
                    served = "stockade serve" + (f" --workers {workers}" if workers > 1 else "")
                    sale = await run_sale(shop, config, f"HTTP ({served}, durable SQLite)")
                    sale.carts_skipped = skipped
                    sale.latency_note = f" (incl. waiting for one of {connections} connections)"
                    sale.request_latencies_s = shop.request_latencies_s
                    return sale

            return anyio.run(main, backend="asyncio")
        finally:
            server.stop()
