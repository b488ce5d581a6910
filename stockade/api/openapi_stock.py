"""The OpenAPI paths of locations, channels, transfers (design.md §7) and carts (§8), built
with :mod:`stockade.api.openapi`'s parts; ``openapi_document`` merges them in. The types they
name are in the document's components (``locations.TYPES``, ``carts.TYPES``)."""

from __future__ import annotations

from typing import Any

from stockade.api.locations import ChannelPage, LocationLevelPage, LocationPage
from stockade.api.openapi import (
    _ID,
    _KEY,
    _SKU,
    _SKU_SCHEMA,
    _WRITE,
    _answer,
    _body,
    _linked,
    _links,
    _order_problems,
    _problems,
)
from stockade.api.schemas import (
    ChangeOrder,
    ExtendHold,
    PatchLocation,
    PutChannel,
    PutLocation,
    PutStock,
    TransferStock,
)
from stockade.engine.models import Channel, Location, LocationLevel, Order

__all__ = ["add_paths"]

_LOCATION = {"name": "location_id", "in": "path", "required": True, "schema": _SKU_SCHEMA}
_CHANNEL = {"name": "channel_id", "in": "path", "required": True, "schema": _SKU_SCHEMA}
_STOCK_CONFLICT = "on-hand there below what holds reserve there, or above the maximum in all"


def add_paths(paths: dict[str, dict[str, Any]]) -> None:
    """Add the operations of locations, channels, transfers and carts to ``paths``."""
    for path, operations in _paths().items():
        paths.setdefault(path, {}).update(operations)


def _order_answers(links: dict[str, Any], missing: str, conflict: str) -> dict[str, Any]:
    """The answers of a call that moves a held order: 200 the order (with ``links``), 404
    ``missing``, 409 ``conflict`` (perhaps out of stock, with shortages) and bad bodies'."""
    answers = {"200": _linked(_answer(Order, "the order as it is now"), links),
               **_order_problems(404, 409, *_WRITE)}  # fmt: skip
    answers["404"]["description"] = missing
    answers["409"]["description"] = conflict
    return answers


def _paths() -> dict[str, dict[str, Any]]:
    to_order = _links(
        "order_id", "/id", "getOrder", "confirmOrder", "cancelOrder", "changeOrder", "extendOrder"
    )
    to_product = _links("sku", "/sku", "getProduct", "listProductLocations", "adjustProduct")
    level = _answer(LocationLevel, "the product's stock at the location")
    edited = _order_answers(
        to_order,
        "unknown order or product",
        (
            "out of stock (with shortages; the order is left as it was), the order is not "
            "reserved, or the idempotency key was used for another request"
        ),
    )
    extended = _order_answers(
        to_order,
        "unknown order",
        (
            "the order is not reserved, or its hold is already at its maximum lifetime, or the "
            "idempotency key was used for another request"
        ),
    )
    moved = {"200": _answer(LocationLevelPage, "the source's level, then the destination's"),
             **_order_problems(404, 409, *_WRITE)}  # fmt: skip
    moved["404"]["description"] = "unknown product or location"
    moved["409"]["description"] = "the source has fewer units available (with shortages)"
    return {
        "/v1/locations": {"get": {
            "operationId": "listLocations", "summary": "Every stock location, in allocation order",
            "responses": {"200": _answer(LocationPage, "every location")}}},
        "/v1/locations/{location_id}": {"put": {
            "operationId": "putLocation",
            "summary": "Create or replace a stock location (deactivating one takes its units "
                       "out of every product's available)",
            "description": "A whole replacement: name, priority and active are all "
                           "required (422 names one left out); PATCH changes some of them.",
            "parameters": [_LOCATION], "requestBody": _body(PutLocation),
            "responses": {"200": _answer(Location, "replaced"),
                          "201": _answer(Location, "created"), **_problems(*_WRITE)}},
            "patch": {
            "operationId": "patchLocation",
            "summary": "Change some fields of a stock location; the others stay as they are",
            "parameters": [_LOCATION], "requestBody": _body(PatchLocation),
            "responses": {"200": _answer(Location, "changed"),
                          **_problems(404, *_WRITE)}}},
        "/v1/channels": {"get": {
            "operationId": "listChannels", "summary": "Every sales channel, by id",
            "responses": {"200": _answer(ChannelPage, "every channel")}}},
        "/v1/channels/{channel_id}": {"put": {
            "operationId": "putChannel",
            "summary": "Create or replace a sales channel selling from some locations",
            "parameters": [_CHANNEL], "requestBody": _body(PutChannel),
            "responses": {"200": _answer(Channel, "replaced"), "201": _answer(Channel, "created"),
                          **_problems(404, *_WRITE)}}},
        "/v1/products/{sku}/locations": {"get": {
            "operationId": "listProductLocations",
            "summary": "A product's stock at each location holding it",
            "parameters": [_SKU],
            "responses": {"200": _answer(LocationLevelPage, "the levels"),
                          **_problems(404, 422)}}},
        "/v1/products/{sku}/locations/{location_id}": {"put": {
            "operationId": "putProductLocation",
            "summary": "Set a product's on-hand at one location (creating the product)",
            "parameters": [_SKU, _LOCATION], "requestBody": _body(PutStock),
            "responses": {"200": _linked(level, to_product),
                          "201": _linked({**level, "description": "the product was created"},
                                         to_product),
                          **_problems(404, 409, *_WRITE, conflict=_STOCK_CONFLICT)}}},
        "/v1/transfers": {"post": {
            "operationId": "transferStock",
            "summary": "Move units on hand between two locations of a product, atomically",
            "requestBody": _body(TransferStock), "responses": moved}},
        "/v1/orders/{order_id}": {"patch": {
            "operationId": "changeOrder",
            "summary": "Replace a held order's lines, all or nothing (a cart edit)",
            "parameters": [_ID, _KEY], "requestBody": _body(ChangeOrder),
            "responses": edited}},
        "/v1/orders/{order_id}/extend": {"post": {
            "operationId": "extendOrder",
            "summary": "Extend a hold, up to its maximum lifetime",
            "parameters": [_ID, _KEY], "requestBody": _body(ExtendHold),
            "responses": extended}},
    }  # fmt: skip
