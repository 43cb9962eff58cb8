"""Browsers at another origin (the web console, served by the API) may call the gateway: the
preflight is answered here, without a key, and every answer to a browser names it allowed."""

from __future__ import annotations

from aiohttp import web

# Any origin: the gateway authenticates by the Authorization header, which a browser never adds
# by itself (no cookies), so a page can only send a key its user gave it.
ALLOWED = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, HEAD, PATCH",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Max-Age": "600",
}


@web.middleware
async def preflight(request: web.Request, handler) -> web.StreamResponse:
    # a browser's preflight, not a client's own OPTIONS: that one still goes to the engine
    if request.method == "OPTIONS" and "Origin" in request.headers and \
            "Access-Control-Request-Method" in request.headers:
        return web.Response(status=204, headers=ALLOWED)
    return await handler(request)


async def allow_origin(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: also streamed and forwarded answers, before their headers go out."""
    if "Origin" in request.headers:
        response.headers["Access-Control-Allow-Origin"] = "*"


def add_cors(app: web.Application) -> None:
    app.middlewares.append(preflight)
    app.on_response_prepare.append(allow_origin)
