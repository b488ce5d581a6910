"""The last-unit rush over HTTP, shared by the server's tests and the workers' tests."""

from __future__ import annotations

import httpx
import trio


async def last_unit_rush(url: str, headers: dict[str, str], units: int = 100,
                         buyers: int = 400) -> None:  # fmt: skip
    """``buyers`` concurrent buyers of one unit each race for ``units`` units of ``hot``
    through the server at ``url``: exactly ``units`` are sold, the rest refused 409, and the
    product ends with nothing on hand or reserved."""
    limits = httpx.Limits(max_connections=buyers)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits,
                                 timeout=30) as client:  # fmt: skip
        put = await client.put("/v1/products/hot", json={"on_hand": units})
        assert put.status_code == 201, put.text
        codes: list[int] = []

        async def buyer() -> None:
            r = await client.post("/v1/orders", json={"lines": [{"sku": "hot", "qty": 1}]})
            codes.append(r.status_code)

        async with trio.open_nursery() as nursery:
            for _ in range(buyers):
                nursery.start_soon(buyer)
        assert sorted(codes) == [201] * units + [409] * (buyers - units)
        stock = (await client.get("/v1/products/hot")).json()
        assert stock == {"sku": "hot", "on_hand": 0, "reserved": 0, "available": 0, "on_sale": True}
