"""What every part of the OpenAPI document's route table uses: references to the models'
schemas, JSON bodies, pages, errors, query parameters and the answers many routes share."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from service.domain import MAX_PAGE_SIZE
from service.web.schemas import ErrorBody, PageMetadata

REF = "#/components/schemas/{model}"


def ref(model: type[BaseModel]) -> dict[str, str]:
    """A reference to `model`'s schema among the components."""
    return {"$ref": REF.format(model=model.__name__)}


def json_content(schema: dict[str, Any], description: str) -> dict[str, Any]:
    """A JSON body (request or answer) of `schema`."""
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def page(item: dict[str, Any]) -> dict[str, Any]:
    """One page of `item`s, with its metadata."""
    return {
        "type": "object",
        "required": ["items", "metadata"],
        "properties": {"items": {"type": "array", "items": item}, "metadata": ref(PageMetadata)},
    }


def error(description: str) -> dict[str, Any]:
    """An error answer, `{"error", "detail"}`."""
    return json_content(ref(ErrorBody), description)


def query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    """An optional query parameter."""
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


PAGING = [
    query(
        "pageSize",
        f"items per page; above {MAX_PAGE_SIZE} is capped",
        {"type": "integer", "minimum": 1, "maximum": 999_999_999},
    ),
    query(
        "pageNumber",
        "1-based page number",
        {"type": "integer", "minimum": 1, "maximum": 999_999_999},
    ),
]
CONDITION = {"type": "string", "enum": [">", "<", ">=", "<="]}
TIME = {"type": "string", "format": "date-time"}
STARTED = {
    "description": "the operation, queued; `Location` is where its progress shows",
    "headers": {"Location": {"schema": {"type": "string"}}},
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Operation"}}},
}
READ_ERRORS = {
    "400": error("a query parameter is wrong; `detail` names it"),
    "401": error("no or wrong bearer token"),
}
WRITE_ERRORS = {
    **READ_ERRORS,
    "403": error("the token may only read (API_READ_TOKENS)"),
}
