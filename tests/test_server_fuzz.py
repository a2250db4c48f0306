"""schemathesis fuzzes every operation of ``/openapi.json`` against the real server over real HTTP:
no answer may be a server error, and every answer must match the status codes, content types and
schemas the document declares (invalid input must be refused with a 4xx)."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.config import SchemathesisConfig
from test_server_helpers import served_fixture

from ibsearch.server.app import openapi_document

TOKEN = "fuzzing-token-0123456789"


served = served_fixture("fuzz", token=TOKEN, max_upload_mb=2)


# Invalid input counts as refused with any 4xx: schemathesis's own list lacks 413, which a search that
# is both malformed and over the upload limit gets first (the limit is checked before the fields).
CONFIG = SchemathesisConfig.from_dict({"checks": {"negative_data_rejection": {"expected-statuses": ["4XX"]}}})

# The document a running server serves (checked below), loaded without one: tests are made from it
# when this module is collected, and sent to the real server.
schema = schemathesis.openapi.from_dict(openapi_document(), config=CONFIG)


def test_the_server_serves_the_document_the_fuzzing_follows(served):
    assert served.http.get("/openapi.json").json() == openapi_document()


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_operation_answers_with_a_server_error_or_against_its_schema(case, served):
    response = case.call_and_validate(
        base_url=served.url,
        headers={"Authorization": f"Bearer {TOKEN}"},
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
            negative_data_rejection,
        ],
    )
    assert response.status_code < 500
