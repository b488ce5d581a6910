"""Stock locations and sales channels over HTTP (design.md §7): the locations and channels
themselves, a product's stock at each location, and transfers between two locations.

Reading is open to anyone (a storefront shows where stock is); every change needs a merchant
key (design.md §10). Each route answers once its change is durable, as the engine call it
makes does; a refused change changes nothing (the engine checks everything first). With
tracing on, each change is a span named after its engine call (``stockade.transfer``...).
"""

from __future__ import annotations

import msgspec
from quart import Blueprint, Response

from stockade.api.accounting import traced
from stockade.api.auth import requires
from stockade.api.routing import current_engine, current_tracing, json_response, read_body
from stockade.api.schemas import PatchLocation, PutChannel, PutLocation, PutStock, TransferStock
from stockade.engine.models import Channel, Location, LocationLevel

__all__ = ["TYPES", "ChannelPage", "LocationLevelPage", "LocationPage", "locations"]


class LocationPage(msgspec.Struct):
    """Every location, in allocation order: ``(priority, id)``."""

    items: list[Location]


class ChannelPage(msgspec.Struct):
    """Every sales channel, by id."""

    items: list[Channel]


class LocationLevelPage(msgspec.Struct):
    """A product's stock at each location holding it, in allocation order (a transfer: the
    source's, then the destination's)."""

    items: list[LocationLevel]


#: The types these routes answer with and read, for the OpenAPI document's components.
TYPES = (PutLocation, PatchLocation, PutChannel, TransferStock, LocationPage, ChannelPage,
         LocationLevelPage)  # fmt: skip

locations = Blueprint("locations", __name__)


@locations.put("/v1/locations/<location_id>")
@requires("merchant")
async def put_location(location_id: str) -> Response:
    """Create (201) or replace (200) a location, whole: every field is required (422 names
    one left out), so a replacement never resets a field by surprise."""
    body = await read_body(PutLocation)
    engine = current_engine()
    created = not await engine.location_exists(location_id)
    setting = engine.set_location(location_id, body.name, body.priority, body.active)
    location = await traced(current_tracing(), "stockade.set_location", setting)
    return json_response(location, 201 if created else 200)


@locations.patch("/v1/locations/<location_id>")
@requires("merchant")
async def patch_location(location_id: str) -> Response:
    """Change some fields of an existing location (404 for an unknown one: PATCH creates
    nothing); the others stay as they are."""
    body = await read_body(PatchLocation)
    given = {field: getattr(body, field) for field in ("name", "priority", "active")}
    changes = {field: value for field, value in given.items() if value is not msgspec.UNSET}
    updating = current_engine().update_location(location_id, **changes)
    return json_response(await traced(current_tracing(), "stockade.update_location", updating))


@locations.get("/v1/locations")
@requires("anyone")
async def list_locations() -> Response:
    return json_response(LocationPage(await current_engine().locations()))


@locations.put("/v1/channels/<channel_id>")
@requires("merchant")
async def put_channel(channel_id: str) -> Response:
    """Create (201) or replace (200) a sales channel."""
    body = await read_body(PutChannel)
    engine = current_engine()
    created = not await engine.channel_exists(channel_id)
    setting = engine.set_channel(channel_id, body.locations)
    channel = await traced(current_tracing(), "stockade.set_channel", setting)
    return json_response(channel, 201 if created else 200)


@locations.get("/v1/channels")
@requires("anyone")
async def list_channels() -> Response:
    return json_response(ChannelPage(await current_engine().channels()))


@locations.put("/v1/products/<sku>/locations/<location_id>")
@requires("merchant")
async def put_product_location(sku: str, location_id: str) -> Response:
    """Set on-hand at one location: 201 when that created the product. The answer is the
    location's level read right after the change (a change made in between shows too)."""
    body = await read_body(PutStock)
    engine = current_engine()
    created = not await engine.has_product(sku)
    setting = engine.set_stock(sku, body.on_hand, location_id)
    await traced(current_tracing(), "stockade.set_stock", setting, 1)
    levels = await engine.stock_by_location(sku)
    (level,) = [level for level in levels if level.location == location_id]
    return json_response(level, 201 if created else 200)


@locations.get("/v1/products/<sku>/locations")
@requires("anyone")
async def list_product_locations(sku: str) -> Response:
    return json_response(LocationLevelPage(await current_engine().stock_by_location(sku)))


@locations.post("/v1/transfers")
@requires("merchant")
async def transfer() -> Response:
    body = await read_body(TransferStock)
    moving = current_engine().transfer(
        body.sku, body.qty, body.source, body.destination, body.reason
    )
    levels = await traced(current_tracing(), "stockade.transfer", moving, 1)
    return json_response(LocationLevelPage(levels))
