"""The one shape of an HTTP error answer, for every role: ``{"error": code, "detail": text}``."""

from __future__ import annotations

from aiohttp import web


def error(status: int, code: str, detail: str) -> web.Response:
    return web.json_response({"error": code, "detail": detail}, status=status)
