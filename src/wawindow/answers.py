"""The one shape of an HTTP error answer, for every role: ``{"error": code, "detail": text}``,
and the catch-all route that gives a request no route takes that shape.

No middleware is involved: the catch-all is a route like any other, tried only after every
other route has declined the request, so the receiver's hot path pays nothing for it. A body
aiohttp cannot decode from its ``Content-Encoding`` is answered by the handlers that read
bodies (:func:`unreadable` words it)."""

from __future__ import annotations

from aiohttp import hdrs, web


def error(status: int, code: str, detail: str) -> web.Response:
    return web.json_response({"error": code, "detail": detail}, status=status)


def unreadable(request: web.Request) -> str:
    """The detail of a ``400 unreadable_body``: aiohttp could not decode the body."""
    coding = ", ".join(request.headers.getall(hdrs.CONTENT_ENCODING, ()))
    return f"the body is not valid {coding[:64]}" if coding else "the body could not be read"


def unreadable_body(request: web.Request) -> web.Response:
    """``400 unreadable_body``, closing the connection: what is left of the body on it is
    unknown."""
    response = error(400, "unreadable_body", unreadable(request))
    response.force_close()
    return response


UNROUTED = "unrouted"  # the catch-all route's name


def add_unrouted_route(app: web.Application) -> None:
    """Answer what no other route takes: ``404 not_found``, or ``405 method_not_allowed`` with
    ``Allow`` when the path is served for other methods. Added last: aiohttp tries the routes
    of the path's own prefixes first and this one (indexed at ``/``) after them all."""
    app.router.add_route("*", "/{path:.*}", _unrouted, name=UNROUTED)


async def _unrouted(request: web.Request) -> web.Response:
    this = request.match_info.route.resource
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is not this:
            _, methods = await resource.resolve(request)
            allowed |= methods
    if not allowed:
        return error(404, "not_found", f"no endpoint at {request.path}")
    response = error(
        405,
        "method_not_allowed",
        f"{request.method} {request.path}: allowed are {', '.join(sorted(allowed))}",
    )
    response.headers[hdrs.ALLOW] = ",".join(sorted(allowed))
    return response
