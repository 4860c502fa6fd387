"""The served OpenAPI document is what the server does: schemathesis against the live API.

Generated requests (valid and invalid path parameters, with and without a token, methods
the paths do not serve) must never get a 5xx, and every answer must match the document:
status codes, headers, content types and bodies.
"""

from __future__ import annotations

import urllib.request
import uuid
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import Case, GenerationMode
from schemathesis.schemas import BaseSchema

from session_operator.api.routes import openapi_document
from tests.e2e.conftest import Cluster, OperatorProcess
from tests.e2e.heartbeats import call, create_token
from tests.e2e.sessions import create_session, wait_for_state

READER = "schemathesis"


@pytest.fixture(scope="module")
def fuzz_namespace(cluster: Cluster) -> Iterator[str]:
    """A namespace for this module, with a ServiceAccount that may beat sessions anywhere."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("create", "serviceaccount", READER, "-n", name)
    cluster.kubectl(
        "create", "clusterrolebinding", f"{name}-heartbeat",
        "--clusterrole=session-heartbeat", f"--serviceaccount={name}:{READER}",
    )  # fmt: skip
    yield name
    cluster.kubectl("delete", "clusterrolebinding", f"{name}-heartbeat", check=False)
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def authorization(cluster: Cluster, heartbeat_role: str, fuzz_namespace: str) -> dict[str, str]:
    """The header of a token allowed to beat every session (so requests reach the lookup)."""
    return {"Authorization": f"Bearer {create_token(cluster, fuzz_namespace, READER)}"}


@pytest.fixture(scope="module")
def api_schema(operator: OperatorProcess, authorization: dict[str, str]) -> BaseSchema:
    """The OpenAPI document as the live server serves it."""
    return schemathesis.openapi.from_url(
        operator.url + "/api/v3/openapi.yaml", headers=dict(authorization), timeout=10
    )


# schemathesis' own pytest integration (`from_fixture`) does not run on pytest 9, so each
# operation's strategy is driven through hypothesis here, in both generation modes.
@pytest.mark.parametrize("mode", list(GenerationMode), ids=str)
def test_generated_requests_get_documented_answers(
    api_schema: BaseSchema, authorization: dict[str, str], mode: GenerationMode
) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {operation.label for operation in operations} >= {
        "POST /api/v3/sessions/{sessionID}/heartbeat",
        "POST /api/v3/namespaces/{namespace}/sessions/{name}/heartbeat",
        "GET /api/v3/sessions/{sessionID}",
        "GET /api/v3/namespaces/{namespace}/sessions/{name}",
    }
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and "{" not in operation.path:
            continue  # nothing to make invalid in a request without parameters

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def answers_as_documented(case: Case) -> None:
            case.call_and_validate(headers=authorization, timeout=10)

        answers_as_documented()


def test_served_document_is_the_packaged_one(
    operator: OperatorProcess, authorization: dict[str, str]
) -> None:
    token = authorization["Authorization"].removeprefix("Bearer ")
    reply = call("GET", operator.url + "/api/v3/openapi.yaml", token)
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/yaml")
    assert call("GET", operator.url + "/api/v3/openapi.yaml").status == 401
    with_body = _raw_get(operator.url + "/api/v3/openapi.yaml", token)
    assert with_body == openapi_document()


def test_real_answers_match_the_document(
    cluster: Cluster,
    operator: OperatorProcess,
    api_schema: BaseSchema,
    authorization: dict[str, str],
    fuzz_namespace: str,
) -> None:
    create_session(
        cluster,
        fuzz_namespace,
        "live",
        {"lease": {"ttlSeconds": 60, "heartbeatIntervalSeconds": 5}},
    )
    create_session(cluster, fuzz_namespace, "done", {"stop": True})
    body, _ = wait_for_state(cluster, fuzz_namespace, "live", {"ready"}, timeout=5)
    wait_for_state(cluster, fuzz_namespace, "done", {"stopped"}, timeout=5)
    session_id = body["status"]["sessionID"]
    by_name = {"namespace": fuzz_namespace, "name": "live"}
    expected = [
        ("/api/v3/namespaces/{namespace}/sessions/{name}/heartbeat", "POST", by_name, 200),
        ("/api/v3/namespaces/{namespace}/sessions/{name}/heartbeat", "POST", by_name, 200),
        ("/api/v3/sessions/{sessionID}/heartbeat", "POST", {"sessionID": session_id}, 200),
        ("/api/v3/namespaces/{namespace}/sessions/{name}", "GET", by_name, 200),
        ("/api/v3/sessions/{sessionID}", "GET", {"sessionID": session_id}, 200),
        (
            "/api/v3/namespaces/{namespace}/sessions/{name}/heartbeat",
            "POST",
            {"namespace": fuzz_namespace, "name": "done"},
            410,
        ),
        ("/api/v3/sessions/{sessionID}/heartbeat", "POST", {"sessionID": "no-such-id"}, 404),
        ("/readyz", "GET", {}, 200),
        ("/healthz", "GET", {}, 200),
        ("/metrics", "GET", {}, 200),
    ]
    for path, method, parameters, status in expected:
        case = api_schema[path][method].Case(path_parameters=parameters)
        response = case.call_and_validate(headers=authorization, timeout=10)
        assert response.status_code == status, (path, parameters, response.text)


def _raw_get(url: str, token: str) -> bytes:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        body: bytes = response.read()
        return body
