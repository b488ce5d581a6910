"""/openapi.json says what the server enforces: its patterns mean what the engine's checks mean,
under Python's ``re`` and under ECMA-262 alike, its limits are the engine's constants, and its
links lead from a placed order to the routes that move it."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema_rs
import pytest

from stockade.api.app import ApiSettings
from stockade.api.openapi import openapi_document
from stockade.api.schemas import MAX_CHANNEL_LOCATIONS
from stockade.engine.locations import MAX_NAME_LENGTH, MAX_PRIORITY
from stockade.engine.validation import (
    DEFAULT_MAX_HOLD,
    MAX_LINES,
    MAX_QTY,
    MAX_REASON_LENGTH,
    MAX_STOCK,
    check_idempotency_key,
    check_location_id,
    check_sku,
)
from stockade.errors import InvalidRequest

DOCUMENT = openapi_document()
SCHEMAS = DOCUMENT["components"]["schemas"]
#: Values where Python's ``$`` (before a final newline) and ECMA's part ways, and the edges.
TRICKY = ["a", "a\n", "a\nb", "\na", "", " a", "a b", "A-z.0_9:", "é", "key\x7f"]
TRICKY += ["x" * 128, "x" * 129, "k" * 255, "k" * 256]


def accepted_by(check: Any, value: str) -> bool:
    try:
        check(value)
    except InvalidRequest:
        return False
    return True


def parameter(path: str, method: str, name: str) -> dict[str, Any]:
    operation = DOCUMENT["paths"][path][method]
    (found,) = [p for p in operation["parameters"] if p["name"] == name]
    schema: dict[str, Any] = found["schema"]
    return schema


@pytest.mark.parametrize(
    ("schema", "check"),
    [
        (SCHEMAS["Line"]["properties"]["sku"], check_sku),
        (parameter("/v1/products/{sku}", "get", "sku"), check_sku),
        (parameter("/v1/products", "get", "after"), check_sku),
        (parameter("/v1/orders", "post", "Idempotency-Key"), check_idempotency_key),
        (parameter("/v1/orders/{order_id}", "patch", "Idempotency-Key"), check_idempotency_key),
        (parameter("/v1/locations/{location_id}", "put", "location_id"), check_location_id),
        (parameter("/v1/channels/{channel_id}", "put", "channel_id"), check_location_id),
        (parameter("/v1/products/{sku}", "get", "channel"), check_location_id),
        (SCHEMAS["PlaceOrder"]["properties"]["location"]["anyOf"][0], check_location_id),
        (SCHEMAS["TransferStock"]["properties"]["destination"], check_location_id),
        (SCHEMAS["PutChannel"]["properties"]["locations"]["items"], check_location_id),
    ],
)
def test_patterns_mean_what_the_engine_checks(schema, check):
    ecma = jsonschema_rs.validator_for(schema)
    for value in TRICKY:
        expected = accepted_by(check, value)
        # msgspec applies a pattern with re.search; JSON Schema validators with ECMA-262.
        assert bool(re.search(schema["pattern"], value)) is expected, value
        assert ecma.is_valid(value) is expected, value


def test_limits_are_the_engines():
    order = SCHEMAS["PlaceOrder"]["properties"]
    assert order["lines"]["maxItems"] == MAX_LINES
    assert order["lines"]["uniqueItems"] is True
    (hold, _null) = order["hold_seconds"]["anyOf"]
    assert hold["maximum"] == DEFAULT_MAX_HOLD.total_seconds()
    assert SCHEMAS["Line"]["properties"]["qty"]["maximum"] == MAX_QTY
    assert SCHEMAS["PutStock"]["properties"]["on_hand"]["maximum"] == MAX_STOCK
    delta = SCHEMAS["Adjustment"]["properties"]["delta"]
    assert (delta["minimum"], delta["maximum"]) == (-MAX_STOCK, MAX_STOCK)
    assert not jsonschema_rs.validator_for(delta).is_valid(0)  # the engine refuses 0
    assert SCHEMAS["Adjustment"]["properties"]["reason"]["maxLength"] == MAX_REASON_LENGTH
    assert SCHEMAS["ChangeOrder"]["properties"]["lines"] == order["lines"]
    extend = SCHEMAS["ExtendHold"]["properties"]["hold_seconds"]
    assert (extend["minimum"], extend["maximum"]) == (1, DEFAULT_MAX_HOLD.total_seconds())
    location = SCHEMAS["PutLocation"]["properties"]
    assert location["name"]["maxLength"] == MAX_NAME_LENGTH
    assert (location["priority"]["minimum"], location["priority"]["maximum"]) == (
        -MAX_PRIORITY, MAX_PRIORITY,
    )  # fmt: skip
    channel = SCHEMAS["PutChannel"]["properties"]["locations"]
    assert (channel["minItems"], channel["maxItems"], channel["uniqueItems"]) == (
        1, MAX_CHANNEL_LOCATIONS, True,
    )  # fmt: skip
    too_many = {"locations": [f"{i:0128d}" for i in range(MAX_CHANNEL_LOCATIONS + 1)]}
    assert len(json.dumps(too_many)) < ApiSettings(admin_token="").max_body_bytes
    transfer = SCHEMAS["TransferStock"]["properties"]
    assert (transfer["qty"]["minimum"], transfer["qty"]["maximum"]) == (1, MAX_STOCK)
    assert transfer["reason"]["maxLength"] == MAX_REASON_LENGTH


def operation_ids() -> set[str]:
    return {op["operationId"] for methods in DOCUMENT["paths"].values() for op in methods.values()}


def test_a_placed_order_links_to_the_routes_that_move_it():
    placed = DOCUMENT["paths"]["/v1/orders"]["post"]["responses"]["201"]["links"]
    targets = {link["operationId"]: link["parameters"] for link in placed.values()}
    assert targets == {
        name: {"order_id": "$response.body#/id"}
        for name in ("getOrder", "confirmOrder", "cancelOrder", "changeOrder", "extendOrder")
    }


def test_every_link_names_an_operation_and_its_parameters():
    ids = operation_ids()
    assert len(ids) == sum(len(methods) for methods in DOCUMENT["paths"].values())  # unique
    by_id = {
        op["operationId"]: op for methods in DOCUMENT["paths"].values() for op in methods.values()
    }
    for methods in DOCUMENT["paths"].values():
        for operation in methods.values():
            for answer in operation["responses"].values():
                for link in answer.get("links", {}).values():
                    target = by_id[link["operationId"]]
                    names = {p["name"] for p in target.get("parameters", [])}
                    assert set(link.get("parameters", {})) <= names, link
