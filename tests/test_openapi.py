"""openapi/openapi.json: the committed document is what the app generates now, a running
gateway serves that same document (and /docs), and every route declares the statuses it
answers, problems included."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from gateway_fixtures import GatewayServer

REPO = Path(__file__).resolve().parent.parent
GENERATOR = REPO / "openapi" / "generate.py"
COMMITTED = REPO / "openapi" / "openapi.json"
REGENERATE = "run `python openapi/generate.py` and commit openapi/openapi.json"

PROBLEM_JSON = "application/problem+json"
PROBLEM_SCHEMA = "#/components/schemas/Problem"

#: The statuses each operation must declare (issue 5): its successes and every problem
#: it can answer. 422 is a malformed request; 503 and 504 a broker that is away or slow;
#: 403, 404 and 429 a broker refusing an address or rejecting a message with that
#: condition. A new operation must be added here.
DECLARED_STATUSES: dict[tuple[str, str], set[int]] = {
    ("POST", "/messages/{address}"): {
        201, 202, 207, 400, 401, 403, 404, 413, 415, 422, 429, 502, 503, 504,
    },
    ("GET", "/messages/{address}"): {200, 204, 400, 401, 403, 404, 422, 503},
    ("POST", "/requests/{address}"): {200, 400, 401, 403, 404, 413, 415, 422, 503, 504},
    ("GET", "/streams/{address}"): {200, 400, 401, 403, 404, 406, 422, 503},
    ("POST", "/auth/tickets"): {201, 401, 403},
    ("GET", "/healthz"): {200},
    ("GET", "/readyz"): {200, 503},
    ("GET", "/metrics"): {200, 401},
}  # fmt: skip

#: Operations that pass the broker's condition on as the status (gateway/problems.py
#: STATUS_BY_CONDITION): a rejected message, or a refused address.
SENDS_TO_THE_BROKER = [("POST", "/messages/{address}"), ("POST", "/requests/{address}")]


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("openapi_generate", GENERATOR)
    assert spec is not None and spec.loader is not None, f"cannot load {GENERATOR}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generated() -> str:
    """The text openapi/generate.py would write now."""
    text: str = _generator().document()
    return text


@pytest.fixture(scope="module")
def document(generated: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(generated)
    return value


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in ("get", "put", "post", "delete", "patch", "head", "options"):
                yield method.upper(), path, operation


def test_the_committed_document_is_what_the_app_generates(generated: str) -> None:
    assert COMMITTED.is_file(), f"{COMMITTED} is missing: {REGENERATE}"
    committed = COMMITTED.read_text(encoding="utf-8")
    if committed != generated:
        old, new = json.loads(committed), json.loads(generated)
        changed = sorted(
            f"{method} {path}"
            for method, path, operation in _operations(new)
            if old.get("paths", {}).get(path, {}).get(method.lower()) != operation
        ) + sorted(
            f"{method} {path} (gone)"
            for method, path, _ in _operations(old)
            if method.lower() not in new["paths"].get(path, {})
        )
        what = ", ".join(changed) or "formatting or components differ"
        pytest.fail(f"openapi/openapi.json is out of date ({what}): {REGENERATE}")


def test_the_document_does_not_depend_on_the_settings(generated: str) -> None:
    """What a gateway serves with any flags is what the file holds."""
    from gateway.app import create_app
    from gateway.settings import Settings

    settings = Settings(
        http="0.0.0.0:9999",
        amqp_url="amqp://user:secret@broker.example:5672",
        max_body=4 * 1024 * 1024,
        cors_origins=["*"],
    )
    text = json.dumps(create_app(settings).openapi(), indent=2, sort_keys=True) + "\n"
    assert text == generated


def test_a_running_gateway_serves_the_document_and_docs(tmp_path: Path) -> None:
    committed = json.loads(COMMITTED.read_text(encoding="utf-8"))
    with GatewayServer(tmp_path) as gateway, httpx.Client(timeout=10) as client:
        served = client.get(f"{gateway.url}/openapi.json")
        assert served.status_code == 200, served.text
        assert served.headers["content-type"].startswith("application/json")
        assert served.json() == committed, f"the served document differs: {REGENERATE}"

        docs = client.get(f"{gateway.url}/docs")
        assert docs.status_code == 200, docs.text
        assert docs.headers["content-type"].startswith("text/html")
        assert "/openapi.json" in docs.text
        assert "swagger" in docs.text.lower()


def test_every_operation_is_listed_here(document: dict[str, Any]) -> None:
    documented = {(method, path) for method, path, _ in _operations(document)}
    assert documented == set(DECLARED_STATUSES), (
        "DECLARED_STATUSES in tests/test_openapi.py must name every operation: "
        f"not documented {sorted(set(DECLARED_STATUSES) - documented)}, "
        f"not listed {sorted(documented - set(DECLARED_STATUSES))}"
    )


@pytest.mark.parametrize(
    ("method", "path"), sorted(DECLARED_STATUSES), ids=lambda value: str(value)
)
def test_every_operation_declares_its_statuses(
    document: dict[str, Any], method: str, path: str
) -> None:
    operation = document["paths"][path][method.lower()]
    declared = {int(status) for status in operation["responses"]}
    missing = DECLARED_STATUSES[(method, path)] - declared
    assert not missing, f"{method} {path} does not declare {sorted(missing)}"


def _problem_responses(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for method, path, operation in _operations(document):
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                yield f"{method} {path} {status}", response


def test_problems_are_declared_as_problem_json(document: dict[str, Any]) -> None:
    """Every 4xx and 5xx a route declares is an application/problem+json answer with the
    Problem schema (FastAPI's own 422 of validation aside: see the next test)."""
    wrong = []
    for name, response in _problem_responses(document):
        content = response.get("content", {})
        schemas = [media.get("schema", {}).get("$ref") for media in content.values()]
        if name.endswith(" 422") and PROBLEM_JSON not in content:
            continue
        if PROBLEM_JSON not in content or PROBLEM_SCHEMA not in schemas:
            wrong.append(f"{name}: {json.dumps(content)}")
    assert not wrong, "problems not declared as problem+json:\n" + "\n".join(wrong)


def test_problem_json_carries_the_problem_schema(document: dict[str, Any]) -> None:
    wrong = []
    for name, response in _problem_responses(document):
        content = response.get("content", {})
        schema = content.get(PROBLEM_JSON, {}).get("schema", {}).get("$ref")
        if schema != PROBLEM_SCHEMA or set(content) != {PROBLEM_JSON}:
            wrong.append(f"{name}: {json.dumps(content)}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(("method", "path"), SENDS_TO_THE_BROKER, ids=lambda value: str(value))
def test_every_status_of_a_broker_condition_is_declared(
    document: dict[str, Any], method: str, path: str
) -> None:
    from gateway.problems import STATUS_BY_CONDITION

    operation = document["paths"][path][method.lower()]
    declared = {int(status) for status in operation["responses"]}
    missing = set(STATUS_BY_CONDITION.values()) - declared
    assert not missing, f"{method} {path} answers but does not declare {sorted(missing)}"
