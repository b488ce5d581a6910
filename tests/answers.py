"""What the HTTP API answered, checked through quart's test client: a JSON document, or a
problem document of a given status and type."""

from __future__ import annotations

from typing import Any

__all__ = ["ok", "problem"]


async def ok(response: Any, status: int = 200) -> Any:
    """The JSON body of ``response``, which must have ``status``."""
    assert response.status_code == status, await response.get_data(as_text=True)
    assert response.content_type == "application/json"
    return await response.get_json()


async def problem(response: Any, status: int, slug: str) -> dict[str, Any]:
    """The problem document of ``response``, which must have ``status`` and type ``slug``."""
    assert response.status_code == status, await response.get_data(as_text=True)
    assert response.content_type == "application/problem+json"
    body: dict[str, Any] = await response.get_json()
    assert body["type"] == f"/problems/{slug}" and body["status"] == status, body
    return body
