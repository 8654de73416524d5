"""Schemathesis fuzzing of the HTTP API in-process: for every operation in /openapi.json, generated requests
(valid and invalid) never get a 5xx, and every response conforms to the declared status codes, content types
and schemas. Seeded through the Hypothesis profile (derandomized in CI) and bounded: MIN_CASES is asserted.

Cases come from ``APIOperation.as_strategy`` under ``@given``, one test per operation and generation mode:
schemathesis 4.32's fixture-based ``from_fixture(...).parametrize()`` fails on pytest 9 (it sets the
removed ``Function._nodeid``), and the app needs the session's index, so it cannot be loaded at import.
"""

from __future__ import annotations

from collections import Counter

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from pipeline.serve import create_app  # noqa: E402

from ..conftest import CI_EXAMPLES  # noqa: E402

MIN_CASES = 1000  # across all operations, in the CI profile
# Not positive_data_acceptance: a schema-valid "image" is any binary string, and random bytes are not an image
# (400; a schema cannot say "a decodable PNG"). A part without a filename is read as the image's bytes (see
# test_api_regressions.py). Every other rule a schema can state is in /openapi.json and checked both ways.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance, negative_data_rejection]
# Nor negative_data_rejection on a multipart body: every form field is a string on the wire, so a "type"
# violation (the array [null] for text) arrives as the text "[null]", valid by the schema. JSON bodies keep it;
# form values the schema refuses that a server could tell apart (k "1_0", text over maxLength once stripped)
# are refused and kept as tests in test_api_regressions.py.
FORM_CHECKS = [c for c in CHECKS if c is not negative_data_rejection]
POS, NEG = GenerationMode.POSITIVE, GenerationMode.NEGATIVE
# Every operation of the API with Hypothesis's max_examples per generation mode: an operation without inputs
# (or whose only input is any string) cannot be sent invalid data, and one without inputs stops after one
# case. A valid search encodes its query (up to 1.4 s a case on two loaded cores); the rest take ~10-40 ms.
OPERATIONS: dict[tuple[str, str], dict[GenerationMode, int]] = {
    ("POST", "/search"): {POS: 60, NEG: 440},
    ("GET", "/items/{item_id}"): {POS: 300},
    ("GET", "/items/{item_id}/image"): {POS: 300},
    ("GET", "/health"): {POS: 10},
    ("GET", "/info"): {POS: 10},
}
CASES: Counter[str] = Counter()  # cases run per operation and mode, checked by the last test


@pytest.fixture(scope="module")
def api_schema(small_retriever):
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(small_retriever))


def test_the_list_covers_every_operation(api_schema) -> None:
    ops = {(op.method.upper(), op.path) for op in (r.ok() for r in api_schema.get_all_operations())}
    assert ops == set(OPERATIONS)


@pytest.mark.parametrize(("operation", "mode"), [(op, m) for op, modes in OPERATIONS.items() for m in modes],
                         ids=lambda v: " ".join(v) if isinstance(v, tuple) else v.value)
def test_operation_conforms_and_never_fails(api_schema, operation: tuple[str, str], mode: GenerationMode) -> None:
    method, path = operation
    label = f"{method} {path} {mode.value}"

    budget = round(OPERATIONS[operation][mode] * settings.default.max_examples / CI_EXAMPLES)  # nightly: 40x

    @settings(max_examples=budget, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(case=api_schema[path][method].as_strategy(generation_mode=mode))
    def run(case) -> None:
        CASES[label] += 1
        case.call_and_validate(checks=FORM_CHECKS if case.media_type == "multipart/form-data" else CHECKS)

    run()


# The stateful phase: scenarios that follow the OpenAPI links of /openapi.json (a search's first hit -> its item,
# its thumbnail), so the item routes also get ids the index holds, not only random strings. Scenarios and steps in
# the CI profile, scaled like the budgets above (nightly: 40x); valid searches dominate its time.
STATEFUL_SCENARIOS, STATEFUL_STEPS = 12, 4


def test_stateful_links_conform_and_never_fail(api_schema) -> None:
    links = api_schema.raw_schema["paths"]["/search"]["post"]["responses"]["200"]["links"]
    assert {link["parameters"]["path.item_id"] for link in links.values()} == {"$response.body#/hits/0/id"}

    found: list[str] = []

    class Scenarios(api_schema.as_state_machine()):  # type: ignore[misc]
        def validate_response(self, response, case, additional_checks=None, **kwargs) -> None:
            label = f"{case.method.upper()} {case.operation.path} stateful"
            CASES[label] += 1
            if response.status_code == 200 and case.operation.path.startswith("/items/"):
                found.append(case.path_parameters["item_id"])  # an id that came from a hit: random ones are unknown
            case.validate_response(response, checks=FORM_CHECKS if case.media_type == "multipart/form-data"
                                   else CHECKS)

    scale = settings.default.max_examples / CI_EXAMPLES
    Scenarios.run(settings=settings(max_examples=round(STATEFUL_SCENARIOS * scale), stateful_step_count=STATEFUL_STEPS,
                                    suppress_health_check=list(HealthCheck), deadline=None))
    assert found, dict(CASES)  # the links were followed, not only declared


def test_enough_cases_ran() -> None:
    """The fuzzing is bounded from below too: fewer cases than MIN_CASES would be a weaker test than claimed."""
    assert CASES, "run the whole module: the fuzz tests above count their cases here"
    assert sum(CASES.values()) >= MIN_CASES, dict(CASES)
