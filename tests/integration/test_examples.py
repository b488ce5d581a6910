"""The examples/ apps, run for real: FastAPI through httpx's ASGI transport, Flask through its
test client."""

from __future__ import annotations

import asyncio

import httpx

from examples.fastapi_app import create_app as create_fastapi_app
from examples.flask_app import create_app as create_flask_app
from stockade import MemoryStore


def test_fastapi_app_reserves_and_confirms():
    store = MemoryStore()
    app = create_fastapi_app(store=store)

    async def shop() -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
                assert (await client.put("/stock/tee", params={"on_hand": 2})).status_code == 200
                replies = await asyncio.gather(
                    *(client.post("/reservations", json={"sku": "tee", "qty": 1}) for _ in range(5))
                )
                assert sorted(r.status_code for r in replies) == [201, 201, 409, 409, 409]
                order_id = next(r.json()["order_id"] for r in replies if r.status_code == 201)
                confirmed = await client.post(f"/reservations/{order_id}/confirm")
                assert confirmed.json() == {"order_id": order_id, "status": "confirmed"}
                assert (await client.post("/reservations/nope/confirm")).status_code == 404
                missing = await client.post("/reservations", json={"sku": "x", "qty": 1})
                assert missing.status_code == 404

    asyncio.run(shop())
    assert store.state.products["tee"] == (1, 1)  # one sold, one still held; committed


def test_flask_app_reserves_and_confirms():
    store = MemoryStore()
    app = create_flask_app(store=store)
    try:
        client = app.test_client()
        assert client.put("/stock/mug", query_string={"on_hand": 1}).status_code == 200
        first = client.post("/reservations", json={"sku": "mug", "qty": 1})
        assert first.status_code == 201
        assert client.post("/reservations", json={"sku": "mug", "qty": 1}).status_code == 409
        order_id = first.get_json()["order_id"]
        confirmed = client.post(f"/reservations/{order_id}/confirm")
        assert confirmed.get_json() == {"order_id": order_id, "status": "confirmed"}
        assert client.post("/reservations/nope/confirm").status_code == 404
    finally:
        app.extensions["stockade"].stop()
    assert store.state.products["mug"] == (0, 0)
