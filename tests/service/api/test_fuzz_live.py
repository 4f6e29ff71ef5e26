"""Schema-driven fuzzing (Schemathesis) of every documented operation against a real server process.

A bounded number of cases per operation; checks: no 5xx, documented status codes, content types,
headers and bodies matching the OpenAPI schema, errors included. Driven through Hypothesis directly
(Schemathesis' pytest plugin does not load under this pytest version).
"""

from __future__ import annotations

import itertools

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.generation.modes import GenerationMode  # noqa: E402

pytestmark = pytest.mark.slow
MAX_EXAMPLES_PER_OPERATION = 25
# 413 is a legitimate answer both ways: a token limit cannot be written in JSON Schema, and too many
# texts (a schema violation) is documented as 413, not 422.
CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "401", "403", "404", "409", "413", "429"]

[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "409", "413", "415", "422", "429"]
"""


def test_every_operation_conforms_to_the_schema(live_server: str) -> None:
    config = schemathesis.config.SchemathesisConfig.from_str(CONFIG)
    schema = schemathesis.openapi.from_url(live_server + "/openapi.json", config=config)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9
    failures: dict[str, str] = {}
    for operation, mode in itertools.product(operations, GenerationMode):

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=MAX_EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case) -> None:  # type: ignore[no-untyped-def]
            case.call_and_validate()

        try:
            check()
        except Unsatisfiable:  # no parameters and no body: nothing can be made invalid
            assert mode == GenerationMode.NEGATIVE, operation.label
        except (Exception, BaseExceptionGroup) as exc:  # collect all operations' failures, report together
            failures[f"{operation.label} ({mode})"] = str(exc)[:2000]
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
    served = sum(
        float(line.rsplit(" ", 1)[1])
        for line in httpx.get(live_server + "/metrics").text.splitlines()
        if line.startswith("translator_http_requests_total{")
    )
    assert served >= 10 * len(operations)  # the cases really reached the server
    print(f"fuzzed {len(operations)} operations with {served:.0f} requests in total")
