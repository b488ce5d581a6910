"""A minimal FastAPI shop that reserves and confirms stock through stockade.

    uvicorn examples.fastapi_app:app

The engine runs on its own trio thread for the app's lifetime (``open_asyncio_engine`` in the
lifespan); every handler awaits it from asyncio like any other async library.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, Field

import stockade


class Reserve(BaseModel):
    sku: str
    qty: int = Field(ge=1)
    hold_seconds: float = 900


def create_app(database: str | None = None, **options: Any) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with stockade.open_asyncio_engine(database, **options) as engine:
            app.state.stock = engine
            yield

    app = FastAPI(lifespan=lifespan)

    def engine_of(request: Request) -> stockade.AsyncioEngine:
        engine: stockade.AsyncioEngine = request.app.state.stock
        return engine

    @app.put("/stock/{sku}")
    async def set_stock(sku: str, on_hand: int, request: Request) -> dict[str, Any]:
        level = await engine_of(request).set_stock(sku, on_hand)
        return {"sku": level.sku, "available": level.available}

    @app.post("/reservations", status_code=201)
    async def reserve(body: Reserve, request: Request) -> dict[str, Any]:
        try:
            order = await engine_of(request).place_order(
                {body.sku: body.qty}, hold_for=body.hold_seconds
            )
        except stockade.OutOfStock as exc:
            raise HTTPException(409, str(exc)) from exc
        except stockade.UnknownProduct as exc:
            raise HTTPException(404, str(exc)) from exc
        return {"order_id": order.id, "status": order.status}

    @app.post("/reservations/{order_id}/confirm")
    async def confirm(order_id: str, request: Request) -> dict[str, Any]:
        try:
            order = await engine_of(request).confirm(order_id)
        except stockade.OrderNotFound as exc:
            raise HTTPException(404, str(exc)) from exc
        except stockade.InvalidTransition as exc:
            raise HTTPException(409, str(exc)) from exc
        return {"order_id": order.id, "status": order.status}

    return app


app = create_app()
