"""The ASGI middleware in front of every endpoint: the API key, the request-body cap, the stats of each
request, and the last line of defence: an unexpected exception becomes a one-line 500 JSON (the traceback goes
to the log) and the server keeps serving."""

from __future__ import annotations

import hmac
import logging
import time

from starlette.responses import JSONResponse

from tunesmith.errors import one_line
from tunesmith.serve.schemas import RequestError

log = logging.getLogger("tunesmith.serve")

OPEN_PATHS = {"/health"}  # answered without the API key (load balancers' probes)
KNOWN_PATHS = {"/health", "/metrics", "/v1/models", "/v1/predict", "/v1/completions", "/v1/chat/completions"}


def error_response(error: RequestError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


class Guard:
    def __init__(self, app, *, stats, api_key: str | None, max_body_bytes: int):
        self.app, self.stats, self.api_key, self.max_body_bytes = app, stats, api_key, max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began, state = time.perf_counter(), {"status": 500, "started": False}

        async def tracked(message):
            if message["type"] == "http.response.start":
                state["status"], state["started"] = message["status"], True
            await send(message)

        try:
            self.check_key(scope)
            body = await self.read_body(scope, receive)
            if body is not None:
                await self.app(scope, replay(body, receive), tracked)
        except RequestError as error:
            if not state["started"]:
                await error_response(error)(scope, receive, tracked)
        except Exception as exc:  # noqa: BLE001 - never a traceback to the client; keep serving
            log.exception("request %s %s failed", scope.get("method"), scope.get("path"))
            if not state["started"]:
                body = {"error": {"message": f"internal error: {one_line(exc)}", "type": "server_error",
                                  "param": None, "code": 500}}
                await JSONResponse(body, status_code=500)(scope, receive, tracked)
        finally:
            path = scope.get("path", "")
            self.stats.record_request(path if path in KNOWN_PATHS else "other", state["status"],
                                      time.perf_counter() - began)

    def check_key(self, scope) -> None:
        if self.api_key is None or scope.get("path") in OPEN_PATHS:
            return
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"authorization", b"").decode("latin-1")
        expected = f"Bearer {self.api_key}"
        if not hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8")):
            raise RequestError(401, "authorization: missing or wrong API key (send the header "
                                    "'Authorization: Bearer KEY')", param="authorization", kind="authentication_error")

    async def read_body(self, scope, receive) -> bytes | None:
        """The whole body, refused with 413 past the cap (by its Content-Length or as it arrives); None when
        the client went away."""
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            raise too_large(self.max_body_bytes)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise too_large(self.max_body_bytes)
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)


def too_large(limit: int) -> RequestError:
    return RequestError(413, f"body: over this server's limit of {limit} bytes (--max-body-bytes)", param="body")


def replay(body: bytes, receive):
    """A `receive` that hands the app the body already read, then waits on the client (disconnects)."""
    sent = False

    async def replayed():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
