"""The OpenAPI document and its page, and schemathesis against a live service over loopback."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import httpx
import pytest
from starlette.routing import Mount, Route

from service.app import create_app
from tests.conftest import API_TOKEN, make_settings
from tests.sink import SIGNING_SECRET
from tests.stack import running_stack

pytestmark = pytest.mark.e2e

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
SCHEMATHESIS_SEED = 20261202
SCHEMATHESIS_DEADLINE_SECONDS = 50.0


def _api_routes() -> set[tuple[str, str]]:
    """Every (method, path) the app serves under /api/."""
    app = create_app(make_settings("sqlite:///unused.db"))
    found = set()
    for route in app.routes:
        if isinstance(route, Mount) and route.path.startswith("/api"):
            for child in route.routes:
                assert isinstance(child, Route)
                for method in child.methods or ():
                    if method != "HEAD":
                        found.add((method.lower(), route.path + child.path))
    return found


async def test_get_openapi_describes_every_api_route(clean_database: str) -> None:
    async with running_stack(clean_database) as stack:
        response = await stack.api.get("/openapi.json", headers={"Authorization": ""})
    assert response.status_code == 200
    doc = response.json()
    assert doc["openapi"].startswith("3.")
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == _api_routes()
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert "401" in op["responses"], (method, path)
    # The request model is the one that parses submissions, with its example.
    job_create = doc["components"]["schemas"]["JobCreate"]
    assert {"method", "path", "body", "tags", "ifMatch", "notify"} <= set(job_create["properties"])
    assert job_create["examples"][0]["path"] == "/v1/customer"


async def test_get_docs_is_a_page_that_needs_nothing_from_elsewhere(clean_database: str) -> None:
    async with running_stack(clean_database) as stack:
        response = await stack.api.get("/docs")
        script = await stack.api.get("/static/docs-render.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "openapi.json" in response.text
    assert "http://" not in response.text and "https://" not in response.text
    assert "<script>" not in response.text and "<style>" not in response.text  # none inline
    # Its script is this service's own file (same origin), nothing from elsewhere.
    sources = re.findall(r'src="([^"]*)"', response.text)
    assert sources == ["/static/docs-render.js"]
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert script.status_code == 200 and "http" not in script.text


async def test_schemathesis_finds_no_server_error_and_no_nonconforming_answer(
    clean_database: str, tmp_path: Path
) -> None:
    # With callbacks on, generated callbackUrls are checked (and refused) too.
    async with running_stack(clean_database, CALLBACK_SIGNING_SECRET=SIGNING_SECRET) as stack:
        # A job and a delivery exist, so reads find something as well as nothing.
        job = await stack.submit(path="/v1/customer", body={"name": "Acme"})
        await stack.wait_for_end(job["id"])
        command = [
            str(SCHEMATHESIS),
            "run",
            f"{stack.service_url}/openapi.json",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,"
            "response_schema_conformance",
            "--mode",
            "positive",
            "--phases",
            "examples,fuzzing",
            "--max-examples",
            "25",
            "--seed",
            str(SCHEMATHESIS_SEED),
            "--generation-database",
            "none",
            "--workers",
            "1",
            "--request-timeout",
            "10",
            "--header",
            f"Authorization: Bearer {API_TOKEN}",
            "--no-color",
        ]
        process = await asyncio.create_subprocess_exec(
            *command,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=tmp_path,
            env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
        )
        try:
            output, _ = await asyncio.wait_for(
                process.communicate(), timeout=SCHEMATHESIS_DEADLINE_SECONDS
            )
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
    text = output.decode(errors="replace")
    assert process.returncode == 0, text


async def test_openapi_is_public_but_the_api_is_not(clean_database: str) -> None:
    async with running_stack(clean_database) as stack:
        async with httpx.AsyncClient(base_url=stack.service_url) as anonymous:
            assert (await anonymous.get("/openapi.json")).status_code == 200
            assert (await anonymous.get("/api/v1/jobs")).status_code == 401
