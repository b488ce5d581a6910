"""schemathesis against the live server's /openapi.json, with every check it has: no 5xx, answers
match the document, requests the document allows are accepted (``positive_data_acceptance``),
requests it forbids are refused, declared auth is enforced, and the OpenAPI links hold up when
the state machine built from them chains calls (list products, hold one, then read, confirm,
cancel or return the order).

Bounded and reproducible: a fixed number of examples per operation and of scenarios and steps,
drawn from a fixed seed (``derandomize``). schemathesis's own pytest plugin does not work with
this pytest, so its hypothesis strategies and state machine are driven here by hand.

Every call carries the admin token as a merchant key (``Authorization: Bearer``), whether or
not the operation declares ``security``: routes that gain security need no change here, and
``ignored_auth`` still probes the declared ones without it.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from bench.server import Server
from stockade.engine.validation import check_idempotency_key
from stockade.errors import InvalidRequest
from stockade.outbound.signing import URL_PATTERN
from stockade.outbound.sinkurl import SINK_URL_PATTERN
from tests.integration.test_server import ADMIN, TOKEN

EXAMPLES = 20  # per operation and generation mode
SCENARIOS = 200
STEPS = 10  # calls per scenario, at most
BOUNDED = settings(
    deadline=None,
    database=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


def one_line_per_sku(context: schemathesis.HookContext, body: Any) -> bool:
    """The rules /openapi.json states only in words, which JSON Schema cannot say: no two
    lines of an order (placed or changed) or of a return name the same sku (design.md §5
    refuses duplicate lines; the document declares ``uniqueItems``, which refuses identical
    lines only), a transfer's source and destination differ, and a product's sale window
    closes after it opens. Such bodies are not drawn."""
    operation = context.operation
    if operation is None or not isinstance(body, dict):
        return True
    where = (operation.method.upper(), operation.path)
    if where == ("POST", "/v1/transfers"):
        return "source" not in body or body.get("source") != body.get("destination")
    if where == ("PUT", "/v1/products/{sku}/rules"):
        return _window_drawable(body.get("opens_at"), body.get("closes_at"))
    if where not in {
        ("POST", "/v1/orders"),
        ("PATCH", "/v1/orders/{order_id}"),
        ("POST", "/v1/orders/{order_id}/returns"),
    }:
        return True
    lines = body.get("lines")
    if not isinstance(lines, list):
        return True
    skus = [repr(line.get("sku")) for line in lines if isinstance(line, dict)]
    return len(skus) == len(set(skus))


_AUTHORITY = re.compile(r"^(?P<scheme>[A-Za-z]+://)(?P<user>[^@/?#]*@)?[^/?#]*")


def loopback_destinations(context: schemathesis.HookContext, body: Any) -> Any:
    """A webhook's or a sink's URL as drawn, but pointing at a closed port on this machine
    (127.0.0.1:1): the server starts delivering to what the fuzz subscribes, and nothing a
    test runs may reach beyond loopback (nor ask a DNS server for a drawn name). The server
    takes exactly the URLs its document's patterns describe (sinkurl.parse checks its own)."""
    operation = context.operation
    if operation is None or not isinstance(body, dict) or not isinstance(body.get("url"), str):
        return body
    pattern = {
        ("PUT", "/v1/webhooks/{webhook_id}"): URL_PATTERN,
        ("PUT", "/v1/sinks/{sink_id}"): SINK_URL_PATTERN,
    }.get((operation.method.upper(), operation.path))
    # Only a URL the server takes is pointed elsewhere: one drawn to be refused (negative
    # data) stays as drawn, refused, and so never delivered to.
    if pattern is not None and re.fullmatch(pattern, body["url"]):
        body = {**body, "url": _AUTHORITY.sub(r"\g<scheme>\g<user>127.0.0.1:1", body["url"], 1)}
    return body


def _window_drawable(opens_at: Any, closes_at: Any) -> bool:
    """Whether a window is one the server takes: times from 1970 to 9999 (UTC), closing after
    it opens. Anything else that is not a time at all is the server's to judge."""
    times: list[datetime | None] = []
    for value in (opens_at, closes_at):
        try:
            time = datetime.fromisoformat(value)
        except (TypeError, ValueError):
            times.append(None)
            continue
        if time.tzinfo is not None and not 0 <= time.timestamp() < 253_402_300_800:
            return False
        times.append(time)
    first, last = times
    return (
        first is None
        or last is None
        or first.tzinfo is None
        or last.tzinfo is None
        or (last > first)
    )


#: Valid data may also be refused with 410 Gone: a change-feed position is valid syntax but
#: may be beyond the newest event, which the server says as it says 404 for an unknown id.
CHECKS = {
    "positive_data_acceptance": {
        "expected-statuses": ["2xx", "3xx", "401", "403", "404", "409", "410", "429", "5xx"]
    }
}


def served_schema(workdir: Path) -> Iterator[tuple[Server, schemathesis.BaseSchema]]:
    # Event streams end after a fifth of a second: a stream that never ends would hold a call.
    server = Server(workdir, TOKEN, env={"STOCKADE_STREAM_LIFETIME": "0.2"})
    server.start()
    try:
        # An explicit Config: no schemathesis.toml found on disk changes the checks.
        schema = schemathesis.openapi.from_url(
            f"{server.url}/openapi.json", config=schemathesis.Config.from_dict({"checks": CHECKS})
        )
        schema.hook("filter_body")(one_line_per_sku)
        schema.hook("map_body")(loopback_destinations)
        yield server, schema
    finally:
        server.kill()


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[schemathesis.BaseSchema]:
    for _, schema in served_schema(tmp_path_factory.mktemp("schema-fuzz")):
        yield schema


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_conforms(fuzzed: schemathesis.BaseSchema, mode: GenerationMode) -> None:
    operations = [result.ok() for result in fuzzed.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 10
    tested = set()
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(BOUNDED, max_examples=EXAMPLES)
        def conforms(case: schemathesis.Case[Any]) -> None:
            case.call_and_validate(headers=ADMIN)

        try:
            conforms()
        except Unsatisfiable:
            # Nothing invalid to send: every input of, say, GET /healthz or of a free-form
            # order id is valid. Only the negative mode may find an operation so.
            assert mode is GenerationMode.NEGATIVE, operation
            continue
        except Exception as exc:  # name the operation that failed
            pytest.fail(f"{operation.method.upper()} {operation.path} ({mode.value}): {exc}")
        tested.add(f"{operation.method.upper()} {operation.path}")
    assert tested >= {  # in negative mode: every operation with a body, a sku or a query
        "GET /v1/products",
        "GET /v1/products/{sku}",
        "PUT /v1/products/{sku}",
        "POST /v1/products/{sku}/adjustments",
        "POST /v1/orders",
        "PUT /v1/locations/{location_id}",
        "PUT /v1/channels/{channel_id}",
        "PUT /v1/products/{sku}/locations/{location_id}",
        "GET /v1/products/{sku}/locations",
        "POST /v1/transfers",
        "PATCH /v1/orders/{order_id}",
        "POST /v1/orders/{order_id}/extend",
    }, tested


def test_linked_calls_conform(tmp_path: Path) -> None:
    answered: Counter[tuple[str, int]] = Counter()
    for server, schema in served_schema(tmp_path):
        for sku in ("a", "b"):  # what GET /v1/products lists, and the link below holds
            put = httpx.put(
                f"{server.url}/v1/products/{sku}", json={"on_hand": 10**9}, headers=ADMIN
            )
            assert put.status_code == 201, put.text
        # Scenarios start from POST and list operations only, and a random sku is rarely a
        # product, so they would seldom reach the order routes. This link, which the served
        # document leaves out (an empty page has no first item to link from), holds one unit
        # of the first listed product, as the link from PUT /v1/products/{sku} does.
        paths = schema.raw_schema["paths"]
        hold = paths["/v1/products/{sku}"]["put"]["responses"]["201"]["links"]["PlaceOrder"]
        first = [{"sku": "$response.body#/items/0/sku", "qty": 1}]
        listed = {**hold, "requestBody": {**hold["requestBody"], "lines": first}}
        paths["/v1/products"]["get"]["responses"]["200"]["links"] = {"HoldListed": listed}

        # The shop's set-up (locations, channels, stock per location, transfers, rules), the
        # broker sinks (each answer about one steers later scenarios, as webhooks do), keys and
        # the books check (roots that link to nothing, which took a third of the steps) stay out of
        # the scenarios, fuzzed above instead: a change there in one scenario (the default
        # location deactivated, a product made) changes what later scenarios' calls answer,
        # which hypothesis reports as flaky generation, and every root added spreads the steps
        # thinner over the order routes this test follows.
        # So do the calls whose answers hang on what earlier scenarios left: a product put or
        # adjusted (it can become the first listed, with other stock) and the list of orders
        # (every earlier scenario's orders, in whatever state time has moved them to): with
        # them, a run's rules and bundles changed with PYTHONHASHSEED and with the clock, and
        # hypothesis stopped the run as flaky generation.
        fixed = (
            schema.exclude(
                path_regex="^/v1/(locations|channels|transfers|sinks|keys|admin"
                "|products/[^/]+/(locations|rules))"
            )
            .exclude(method="PUT", path_regex="^/v1/products/[^/]+$")
            .exclude(method="POST", path_regex="^/v1/products/[^/]+/adjustments$")
            .exclude(method="GET", path_regex="^/v1/orders$")
        )

        class Scenarios(fixed.as_state_machine()):  # type: ignore[misc]
            url = server.url

            def get_call_kwargs(self, case: schemathesis.Case[Any]) -> dict[str, Any]:
                # The merchant key replaces whatever key was drawn; a case drawn without the
                # Authorization its operation requires (negative data) is sent without one.
                declared = any(p.name.lower() == "authorization" for p in case.operation.headers)
                sent = {name.lower() for name in case.headers or {}}
                if declared and "authorization" not in sent:
                    return {}
                return {"headers": ADMIN}

            def before_call(self, case: schemathesis.Case[Any]) -> None:
                # A valid key drawn in one scenario is drawn again in others with other
                # lines (409) or the same (the old order again): the server's answer would
                # depend on earlier scenarios, which hypothesis reports as flaky generation.
                # A fresh valid key keeps scenarios apart; an invalid one stays as drawn.
                key = case.headers.get("Idempotency-Key")
                if key is None:
                    return
                try:
                    check_idempotency_key(key)
                except InvalidRequest:
                    return
                case.headers["Idempotency-Key"] = uuid.uuid4().hex

            def teardown(self) -> None:
                # Webhook subscriptions outlive a scenario, and both the answers about one (a
                # PUT creates or replaces, a GET or DELETE finds it or not) and the list of them
                # (which links to each) steer the next scenario: each starts with none.
                for kind in ("webhooks", "sinks"):  # sinks too, for the same reason
                    listed = httpx.get(f"{self.url}/v1/{kind}", headers=ADMIN).json()
                    for item in listed["items"]:
                        httpx.delete(f"{self.url}/v1/{kind}/{item['id']}", headers=ADMIN)
                super().teardown()

            def after_call(
                self, response: schemathesis.Response, case: schemathesis.Case[Any]
            ) -> None:
                super().after_call(response, case)
                answered[case.operation.label, response.status_code] += 1

        Scenarios.run(settings=settings(BOUNDED, max_examples=SCENARIOS, stateful_step_count=STEPS))
    # The links were followed: holds were placed on listed products and then moved.
    assert answered["POST /v1/orders", 201] > 0, answered
    assert answered["POST /v1/orders/{order_id}/confirm", 200] > 0, answered
    assert answered["POST /v1/orders/{order_id}/cancel", 200] > 0, answered
    assert answered["POST /v1/orders/{order_id}/extend", 200] > 0, answered
