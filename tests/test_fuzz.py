"""Fuzzing over the OpenAPI document: schemathesis generates requests for every operation
of the document (examples, boundary and malformed values, bodies in undeclared media
types, then random ones) against a real `coordinator serve` (the shipped samples,
SQLite, no channels), and each request goes out three times: with the admin token, with
the intake token and with no credentials. No answer may be a 5xx, and every answer must
be what the document says: a documented status, its content type, its schema.

Random ids find nothing, so every other request names a real incident, drill or
playbook instead (and every other trigger a real playbook): the handlers behind the
404s are fuzzed too, on state the admin's earlier requests changed.

Deterministic (a fixed seed, derandomized, no example database) and bounded: the last
test checks that enough was sent, over every operation and principal."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from typing import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from coordinator.web.openapi import document

from .conftest import REPO
from .redis_server import free_port
from .service_process import ADMIN_TOKEN, ServeProcess

INTAKE_TOKEN = "fuzz-intake-token-0123456789"
PD_KEY = "fuzz-pagerduty-routing-key-0123"
PRINCIPALS = {
    "admin": {"Authorization": f"Bearer {ADMIN_TOKEN}"},
    "intake": {"Authorization": f"Bearer {INTAKE_TOKEN}"},
    "anonymous": {},
}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
SEED = 20261124
EXAMPLES = 100  # per operation, in the random phase; the other phases add their own
MIN_REQUESTS = 5_000
# What the shipped samples hold (playbooks/, drills/, contacts/).
PLAYBOOK, REGION, DRILL = "broadband-outage", "ningbo", "weekly-broadband"

# The document the service serves (test_the_service_serves_this_document): the lazy
# loader, schemathesis.pytest.from_fixture, does not run under pytest 9.2.
schema = schemathesis.openapi.from_dict(document(), config=schemathesis.Config(seed=SEED))
schema.config.generation.update(max_examples=EXAMPLES, deterministic=True, database="none")
# NDJSON bodies are text; without a serializer schemathesis would skip them.
schemathesis.serializer.alias("application/x-ndjson", "text/plain")

SENT: Counter[tuple[str, str]] = Counter()  # (principal, "METHOD /path") -> requests
STATUSES: Counter[int] = Counter()
STARTED: list[float] = []


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    tmp = tmp_path_factory.mktemp("fuzz")
    served = ServeProcess(REPO, f"sqlite:///{tmp}/fuzz.db", free_port(), tmp / "serve.log",
                          COORDINATOR_INTAKE_TOKEN=INTAKE_TOKEN, COORDINATOR_NO_CHANNELS="1",
                          COORDINATOR_USERS_FILE=str(tmp / "users.yaml"),
                          # the alarm receivers' own secrets: the admin's requests reach their handlers
                          COORDINATOR_ALERTMANAGER_TOKEN=ADMIN_TOKEN, COORDINATOR_PAGERDUTY_ROUTING_KEY=PD_KEY)
    asyncio.run(served.start())
    STARTED.append(time.monotonic())
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture(scope="module")
def known(service: ServeProcess) -> dict[str, str]:
    """Path ids that exist: an incident opened by hand, a drill, a playbook."""
    status, opened = asyncio.run(service.post("/api/incidents", {
        "playbook": PLAYBOOK, "region": REGION, "params": {"affected_area": "鄞州区部分小区"}}))
    assert status == 201, opened
    return {"/api/incidents/": opened["id"], "/api/drills/": DRILL, "/api/playbooks/": PLAYBOOK}


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def test_the_service_serves_this_document(service: ServeProcess, session: requests.Session) -> None:
    assert session.get(f"{service.url}/api/openapi.json").json() == schema.raw_schema


TURN = itertools.count()


def point_at_real_things(case: schemathesis.Case, known: dict[str, str]) -> None:
    """Every other case: a real id in the path, a real playbook and region to trigger."""
    if next(TURN) % 2:
        return
    for prefix, real in known.items():
        if case.path.startswith(prefix) and case.path_parameters and "id" in case.path_parameters:
            case.path_parameters["id"] = real
    if case.path == "/api/incidents" and case.method == "POST" and isinstance(case.body, dict):
        case.body["playbook"] = PLAYBOOK
        case.body.setdefault("region", REGION)
    if case.path == "/hooks/pagerduty/v2/enqueue" and isinstance(case.body, dict):
        case.body["routing_key"] = PD_KEY


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True)
def test_every_answer_is_documented(case: schemathesis.Case, service: ServeProcess, known: dict[str, str],
                                    session: requests.Session) -> None:
    point_at_real_things(case, known)
    for principal, headers in PRINCIPALS.items():
        response = case.call(base_url=service.url, session=session, headers=headers)
        SENT[principal, case.operation.label] += 1  # (an unsupported-method probe counts to its operation)
        # /readyz answers its documented 503 here (the service runs with no channels)
        not_ready = case.path == "/readyz" and response.status_code == 503
        if not not_ready:
            STATUSES[response.status_code] += 1
        case.validate_response(response, checks=CHECKS[1:] if not_ready else CHECKS, headers=headers)


def test_the_fuzzing_was_thorough(service: ServeProcess) -> None:
    """Enough requests over every operation and principal (the tests above ran first),
    none of them a 5xx, and nothing the service logged as an unhandled error."""
    total = sum(SENT.values())
    operations = {op for _, op in SENT}
    documented = {f"{m.upper()} {p}" for p, ops in schema.raw_schema["paths"].items() for m in ops}
    print(f"\nfuzz: {total} requests over {len(operations)} operations and {len({p for p, _ in SENT})} "
          f"principals in {time.monotonic() - STARTED[0]:.0f} s; statuses {dict(sorted(STATUSES.items()))}")
    assert operations == documented
    assert {p for p, _ in SENT} == set(PRINCIPALS)
    assert total >= MIN_REQUESTS, SENT
    assert not [status for status in STATUSES if status >= 500]
    assert "Traceback" not in service.output(), service.output()[-3000:]
