"""The nightly fuzz campaign: Schemathesis against the HTTP API in-process (ASGI; nothing listens on a port).

Stateless cases for every operation (valid and invalid, in the proportions of tests/serve/test_api_fuzz.py),
then the stateful phase: scenarios that follow the OpenAPI links of /openapi.json (a search's first hit -> its
item and its thumbnail). Every response is checked (no 5xx; status code, content type, headers and body as the
schema declares; invalid JSON refused) and a failure is counted, not fatal, so one run reports every figure.

    python -m benchmarks.api_fuzz --index /path/to/small/index --cases 5000 --scenarios 150 --seed 1
    python -m benchmarks.api_fuzz --index indexes/openmoji --json out.json

Exit code 1 when any 5xx or schema mismatch was seen. Bounded: Hypothesis draws at most the given counts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

# Cases per generation mode, as shares of --cases (the CI test's budgets; an operation without inputs stops early).
SHARES: dict[tuple[str, str, str], int] = {
    ("POST", "/search", "positive"): 60, ("POST", "/search", "negative"): 440,
    ("GET", "/items/{item_id}", "positive"): 300, ("GET", "/items/{item_id}/image", "positive"): 300,
    ("GET", "/health", "positive"): 10, ("GET", "/info", "positive"): 10,
}


@dataclass
class Figures:
    """What the campaign ran and found."""

    cases: Counter[str] = field(default_factory=Counter)  # per operation and phase
    server_errors: int = 0  # 5xx responses
    mismatches: int = 0  # responses that break the schema (any failed check but a 5xx)
    linked_items_found: int = 0  # stateful item requests answered 200: ids followed from a hit
    failures: list[str] = field(default_factory=list)  # the first few, one line each
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.cases.values())


def checks() -> tuple[list[Any], list[Any]]:
    """The checks of tests/serve/test_api_fuzz.py (why each is in or out is said there): JSON, multipart."""
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        negative_data_rejection,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    full = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
            response_headers_conformance, negative_data_rejection]
    return full, [c for c in full if c is not negative_data_rejection]


def validate(case: Any, response: Any, figures: Figures, label: str) -> None:
    """Run the checks on one response and count, rather than raise, what fails."""
    full, form = checks()
    figures.cases[label] += 1
    try:
        case.validate_response(response, checks=form if case.media_type == "multipart/form-data" else full)
    except Exception as e:  # a FailureGroup of the failed checks
        if response.status_code >= 500:
            figures.server_errors += 1
        else:
            figures.mismatches += 1
        if len(figures.failures) < 10:
            figures.failures.append(f"{label}: {response.status_code}: {str(e).strip().splitlines()[0]}")


def stateless(operation: Any, mode: str, n: int, seed: int, figures: Figures, label: str, base: Any) -> None:
    """Up to ``n`` cases of one operation in one generation mode, each called and checked."""
    from hypothesis import given, settings
    from hypothesis import seed as hypothesis_seed
    from schemathesis import GenerationMode

    @hypothesis_seed(seed)
    @settings(base, max_examples=n)
    @given(case=operation.as_strategy(generation_mode=GenerationMode(mode)))
    def one(case: Any) -> None:
        validate(case, case.call(), figures, label)

    one()


def run(index: str, cases: int, scenarios: int, steps: int, seed: int) -> Figures:
    import schemathesis
    from hypothesis import HealthCheck, settings

    from pipeline import Retriever
    from pipeline.serve import create_app

    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(Retriever.load(index)))
    figures, t0 = Figures(), time.perf_counter()
    quiet = settings(deadline=None, database=None, suppress_health_check=list(HealthCheck))
    total = sum(SHARES.values())
    for (method, path, mode), share in SHARES.items():
        label = f"{method} {path} {mode}"
        stateless(schema[path][method], mode, max(1, round(cases * share / total)), seed, figures, label, quiet)
        print(f"{label}: {figures.cases[label]} cases", file=sys.stderr)

    class Scenarios(schema.as_state_machine()):  # type: ignore[misc]
        def validate_response(self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any) -> None:
            label = f"{case.method.upper()} {case.operation.path} stateful"
            if response.status_code == 200 and case.operation.path.startswith("/items/"):
                figures.linked_items_found += 1
            validate(case, response, figures, label)

    Scenarios.run(settings=settings(quiet, max_examples=scenarios, stateful_step_count=steps, derandomize=True))
    figures.seconds = round(time.perf_counter() - t0, 1)
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--index", required=True, help="an index directory (a small one keeps valid searches fast)")
    p.add_argument("--cases", type=int, default=5000, help="stateless cases across every operation")
    p.add_argument("--scenarios", type=int, default=150, help="stateful scenarios (Hypothesis examples)")
    p.add_argument("--steps", type=int, default=6, help="at most this many calls per scenario")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the figures here")
    args = p.parse_args(argv)
    figures = run(args.index, args.cases, args.scenarios, args.steps, args.seed)
    out = {**asdict(figures), "cases": dict(figures.cases), "total": figures.total}
    print(json.dumps(out, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)
    return 1 if figures.server_errors or figures.mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
