"""The one shape of an HTTP error answer, for every role: ``{"error": code, "detail": text}``,
and the middleware that gives aiohttp's own error answers that shape."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web


def error(status: int, code: str, detail: str) -> web.Response:
    return web.json_response({"error": code, "detail": detail}, status=status)


def unreadable(request: web.Request) -> str:
    """The detail of a ``400 unreadable_body``: aiohttp could not decode the body."""
    coding = ", ".join(request.headers.getall(hdrs.CONTENT_ENCODING, ()))
    return f"the body is not valid {coding[:64]}" if coding else "the body could not be read"


@web.middleware
async def json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """A path no route has (404), a method its route does not take (405, with ``Allow``) and a
    body aiohttp cannot decode from its ``Content-Encoding`` (400), answered as :func:`error`
    instead of aiohttp's plain text. The outermost middleware: the others see the exception."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return error(404, "not_found", f"no endpoint at {request.path}")
    except web.HTTPMethodNotAllowed as exc:
        allowed = ", ".join(sorted(exc.allowed_methods))
        response = error(
            405, "method_not_allowed", f"{request.method} {request.path}: allowed are {allowed}"
        )
        response.headers[hdrs.ALLOW] = exc.headers[hdrs.ALLOW]
        return response
    except web.RequestPayloadError:
        response = error(400, "unreadable_body", unreadable(request))
        response.force_close()  # what is left of the body on the connection is unknown
        return response
