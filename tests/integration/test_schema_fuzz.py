"""schemathesis against the live server's /openapi.json: no 5xx, answers match the schema.

Bounded: a fixed number of generated examples per operation. (schemathesis's own pytest plugin
does not work with this pytest, so each operation's hypothesis strategy is driven here.)

Every check runs but ``positive_data_acceptance``: JSON Schema's ``integer`` admits ``5.0``,
which stockade refuses on purpose (design.md: non-integers are bad input, answered 422).
Route tests cover that valid requests are accepted.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from bench.server import Server
from tests.integration.test_server import ADMIN, TOKEN

EXAMPLES = 25


def test_every_operation_conforms(tmp_path):
    server = Server(tmp_path, TOKEN)
    server.start()
    try:
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
        assert len(operations) >= 10
        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def conforms(case: schemathesis.Case) -> None:  # type: ignore[type-arg]
                case.call_and_validate(
                    headers=ADMIN, excluded_checks=[checks.positive_data_acceptance]
                )

            try:
                conforms()
            except Exception as exc:  # name the operation that failed
                pytest.fail(f"{operation.method.upper()} {operation.path}: {exc}")
    finally:
        server.stop()
