"""The packaged OpenAPI document describes exactly the routes, parameters and bodies served."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from session_operator.api import routes
from session_operator.api.bodies import HeartbeatBody, SessionBody
from session_operator.api.routes import HeartbeatRoutes, openapi_document
from session_operator.api.server import create_app


@pytest.fixture
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(openapi_document())
    return loaded


def test_document_is_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"


def test_every_served_route_is_documented_and_nothing_else(document: dict[str, Any]) -> None:
    api = HeartbeatRoutes.__new__(HeartbeatRoutes)  # routing only: no requests are served
    app = create_app(lambda: True, api)
    served = {(route.method, route.resource.canonical) for route in app.router.routes()}
    documented = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }
    assert served == documented


def test_path_parameters_are_validated_with_the_documented_patterns(
    document: dict[str, Any],
) -> None:
    parameters = document["components"]["parameters"]
    assert parameters["sessionID"]["schema"]["pattern"] == f"^{routes.SESSION_ID_PATTERN}$"
    assert parameters["namespace"]["schema"]["pattern"] == f"^{routes.NAMESPACE_PATTERN}$"
    assert parameters["name"]["schema"]["pattern"] == f"^{routes.NAME_PATTERN}$"


def test_body_schemas_have_exactly_the_served_fields(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for name, model in (("Heartbeat", HeartbeatBody), ("Session", SessionBody)):
        assert set(schemas[name]["properties"]) == set(model.model_fields), name
        assert set(schemas[name]["required"]) == set(model.model_fields), name


def test_every_response_documents_cache_control(document: dict[str, Any]) -> None:
    shared = document["components"]["responses"]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if "$ref" in response:
                    response = shared[response["$ref"].rsplit("/", 1)[1]]
                assert "Cache-Control" in response["headers"], (method, path, status)
