"""Every route fuzzed from the app's own OpenAPI document (schemathesis): no 5xx, and every
answer is one the document declares (status code, content type, body schema). The service
runs with an API key, which the document declares as its security scheme; the generated
requests carry it, and schemathesis also checks that a request without it is refused.

Bounded: ``MAX_EXAMPLES`` cases per operation, so the module stays well within a minute."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_schema_conformance,
    status_code_conformance,
)

from services.api.app import create_app
from tests.services.conftest import Media, service_settings

API_KEY = "schemathesis-key"
MAX_EXAMPLES = 12
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    ignored_auth,
]


@pytest.fixture(scope="module")
def api_schema(
    checkpoint_dir: Path, media: Media, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[schemathesis.BaseSchema]:
    data_dir = tmp_path_factory.mktemp("schemathesis-app")
    app = create_app(
        service_settings(checkpoint_dir, data_dir, api_key=API_KEY, max_upload_bytes=1_000_000)
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    yield schema
    shutdown_lifespans()  # schemathesis keeps the app's lifespan open until asked


def _operations() -> list[tuple[str, str]]:
    """(METHOD, path) of every documented operation (``create_app`` loads nothing)."""
    document = create_app().openapi()
    return [(m.upper(), path) for path, ops in document["paths"].items() for m in ops]


OPERATIONS = _operations()


def test_the_document_declares_the_api_key_scheme_on_protected_routes(
    api_schema: schemathesis.BaseSchema,
) -> None:
    raw = api_schema.raw_schema
    assert raw["components"]["securitySchemes"]["APIKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "`Authorization: Bearer <AVID_API_KEY>` (when the service has a key)",
    }
    for path, operations in raw["paths"].items():
        for method, operation in operations.items():
            open_route = path in ("/healthz", "/readyz")
            assert ("security" in operation) != open_route, (method, path)


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_route_answers_as_documented(
    api_schema: schemathesis.BaseSchema, method: str, path: str
) -> None:
    operation = api_schema[path][method]
    statuses: list[int] = []

    @given(case=operation.as_strategy())
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def fuzz(case: schemathesis.Case) -> None:
        response = case.call_and_validate(
            headers={"Authorization": f"Bearer {API_KEY}"}, checks=CHECKS
        )
        statuses.append(response.status_code)

    fuzz()
    assert statuses, "no case was generated"
    assert max(statuses) < 500, statuses


def test_refused_requests_count_under_their_real_route_in_metrics(
    checkpoint_dir: Path, media: Media, tmp_path: Path
) -> None:
    """A 401 answered by the request guard (before routing) is not an "unmatched" request."""
    from fastapi.testclient import TestClient

    from tests.services.test_api import upload

    settings = service_settings(checkpoint_dir, tmp_path / "data", api_key=API_KEY)
    with TestClient(create_app(settings)) as client:
        assert client.post("/embed/video", files=upload(media.wav)).status_code == 401
        assert client.get("/items/some-id").status_code == 401
        assert client.delete("/items/some-id").status_code == 401
        text = client.get("/metrics", headers={"Authorization": f"Bearer {API_KEY}"}).text
    for method, route in (
        ("POST", "/embed/video"),
        ("GET", "/items/{item_id}"),
        ("DELETE", "/items/{item_id}"),
    ):
        line = f'avid_http_requests_total{{method="{method}",route="{route}",status="401"}} 1.0'
        assert line in text, text
    assert 'route="unmatched"' not in text
