"""schemathesis against the server's own OpenAPI schema (deeprecall/server/openapi.py), uvicorn for real:
whatever the schema allows, or nearly allows (negative cases), the server never answers 5xx, and what it
answers matches the schema (status codes, content types, response shapes)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from deeprecall.server.openapi import openapi_document
from deeprecall.testing.scripted_server import ScriptedLLMServer, by_turn
from tests.conftest import ROOT, SUB
from tests.engine.test_query import repl
from tests.server.harness import ACME_KEY, Served, tenant_settings

SETTINGS = tenant_settings(max_messages=8, max_question_chars=400)
schema = schemathesis.openapi.from_dict(openapi_document(SETTINGS))
invalid = schemathesis.openapi.from_dict(openapi_document(SETTINGS),
                                         config=SchemathesisConfig.from_dict({"generation": {"mode": "negative"}}))
DONE = repl('answer["content"] = "done"\nanswer["ready"] = True')


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with ScriptedLLMServer({ROOT: by_turn(DONE), SUB: lambda r: "sub"}) as llm, Served(llm, SETTINGS) as running:
        yield running


def no_server_error(ctx: object, response: schemathesis.Response, case: schemathesis.Case) -> bool:
    assert response.status_code < 500, f"{response.status_code}: {response.text[:300]}"
    return True


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_5xx_and_responses_match_the_schema(case: schemathesis.Case, served: Served) -> None:
    case.call_and_validate(base_url=served.url, headers={"Authorization": f"Bearer {ACME_KEY}"},
                           checks=[no_server_error, status_code_conformance, content_type_conformance,
                                   response_schema_conformance])


@invalid.include(path="/v1/chat/completions").parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_invalid_requests_get_4xx_not_5xx(case: schemathesis.Case, served: Served) -> None:
    response = case.call(base_url=served.url, headers={"Authorization": f"Bearer {ACME_KEY}"})
    assert response.status_code < 500, f"{response.status_code}: {response.text[:300]}"
    if case.operation.path == "/v1/chat/completions" and response.status_code >= 400:
        assert set(response.json()["error"]) == {"message", "type", "code", "param"}
