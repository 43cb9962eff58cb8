"""Forwarding one request to an engine and its answer back, bodies as bytes: never parsed.

Small bodies are read whole (the common case, and a request that never reached the engine can
then be sent again after a wake); larger ones stream through in chunks both ways.
"""

from __future__ import annotations

import json

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

BUFFER_LIMIT = 1 << 20  # bodies up to this are read whole; larger ones stream
CHUNK = 1 << 16
# hop-by-hop headers (RFC 9110 7.6.1) and what the gateway itself answers for
# the server inflates a gzip or deflate request body as it reads it, so the engine gets it plain
DROPPED_REQUEST = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
                   "host", "authorization", "content-length", "proxy-authorization", "content-encoding"}
DROPPED_RESPONSE = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
                    "content-length"}


class NotSent(Exception):
    """The engine could not be reached at all: nothing was sent, so sending again is safe."""


def error_answer(status: int, kind: str, reason: str, retry_after_s: int | None = None,
                 extra_headers: dict[str, str] | None = None) -> web.Response:
    """An answer of the gateway's own, shaped like an engine's error so clients show the reason."""
    headers = dict(extra_headers or {})
    if retry_after_s:
        headers["Retry-After"] = str(retry_after_s)
    body = json.dumps({"error": {"type": kind, "reason": reason}, "status": status})
    return web.Response(status=status, text=body, content_type="application/json", headers=headers)


def upstream_headers(request: web.Request, authorization: str | None) -> CIMultiDict:
    headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in DROPPED_REQUEST)
    if authorization:
        headers["Authorization"] = authorization  # the engine's own credentials, never the tenant's key
    if request.content_length is not None and "Content-Encoding" not in request.headers:
        headers["Content-Length"] = str(request.content_length)  # an inflated body's length is not known
    return headers


async def read_small_body(request: web.Request) -> bytes | None:
    """The whole body if it is small and of known length (or absent); None: stream it."""
    if request.content_length is None:
        return b"" if not request.body_exists else None
    return await request.read() if request.content_length <= BUFFER_LIMIT else None


async def read_checked_body(request: web.Request, limit: int) -> bytes | None:
    """The whole body of a call the policy must read, however it was sent; None: over `limit`."""
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(CHUNK):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def forward(session: aiohttp.ClientSession, request: web.Request, url: str, headers: CIMultiDict,
                  body: bytes | None, timeout_s: float) -> tuple[web.StreamResponse, int, int]:
    """Send the request on, answer with the engine's status, headers and body; (answer, bytes in, out)."""
    counted_in = 0

    async def stream_in():
        nonlocal counted_in
        async for chunk in request.content.iter_chunked(CHUNK):
            counted_in += len(chunk)
            yield chunk

    try:
        upstream = await session.request(
            request.method, URL(url, encoded=True), headers=headers, data=body if body is not None else stream_in(),
            allow_redirects=False, auto_decompress=False, timeout=aiohttp.ClientTimeout(total=timeout_s),
        )
    except aiohttp.ClientConnectorError as exc:
        raise NotSent(str(exc)) from exc
    if body is not None:
        counted_in = len(body)
    try:
        response_headers = CIMultiDict((k, v) for k, v in upstream.headers.items() if k.lower() not in DROPPED_RESPONSE)
        length = upstream.content_length
        if length is not None and length <= BUFFER_LIMIT:
            payload = await upstream.read()
            return web.Response(status=upstream.status, body=payload, headers=response_headers), counted_in, len(payload)
        answer = web.StreamResponse(status=upstream.status, headers=response_headers)
        await answer.prepare(request)
        sent = 0
        async for chunk in upstream.content.iter_chunked(CHUNK):
            sent += len(chunk)
            await answer.write(chunk)
        await answer.write_eof()
        return answer, counted_in, sent
    finally:
        upstream.release()
