"""The FastAPI app of `tunesmith serve`: `create_app(service, ...)` for a PredictService (/v1/predict) or a
GenerateService (/v1/completions, /v1/chat/completions), plus /v1/models, /health and /metrics.

Every refused request is a 4xx in OpenAI's error shape whose message starts with the field at fault; the
Guard middleware (guard.py) checks the API key and the body size, records the stats, and turns anything
unexpected into a one-line 500. Work runs on one worker thread behind a bounded queue (batching.py): the
model is only ever used by that thread.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import StreamingResponse

from tunesmith.errors import one_line
from tunesmith.serve.batching import Batcher, QueueFull
from tunesmith.serve.generator import GenerationJob
from tunesmith.serve.guard import Guard, error_response, log
from tunesmith.serve.openai_format import ChunkWriter, completion, error_event, model_list
from tunesmith.serve.schemas import (
    ChatRequest, CompletionRequest, Limits, PredictRequest, RequestError, check_generation, check_pairs, check_texts,
    parse_body,
)
from tunesmith.serve.stats import Stats

ENDPOINTS = {"predict": "POST /v1/predict", "generate": "POST /v1/completions, POST /v1/chat/completions"}


def make_batcher(service, stats: Stats, *, window_ms: float, max_batch: int, max_queue: int) -> Batcher:
    if service.kind == "predict":  # requests' texts batched into one forward pass
        return Batcher(service.predict_batch, window_ms=window_ms, max_batch=max_batch, max_queue=max_queue,
                       size=len, on_batch=stats.record_batch, name="tunesmith-predict")
    service.on_pass = stats.record_batch  # generate calls, counted by the service (greedy ones are shared)
    return Batcher(service.run_batch, window_ms=window_ms, max_batch=max_batch, max_queue=max_queue,
                   name="tunesmith-generate")


class Endpoints:
    """The handlers, over one service (what is served), its batcher, the caps and the stats."""

    def __init__(self, service, batcher: Batcher, stats: Stats, limits: Limits, settings: dict):
        self.service, self.batcher, self.stats, self.limits, self.settings = service, batcher, stats, limits, settings
        self.created = int(time.time())

    def require(self, kind: str) -> None:
        if self.service.kind != kind:
            raise RequestError(404, f"path: this server serves a {self.service.task} run; its endpoints are "
                                    f"{ENDPOINTS[self.service.kind]}", param="path", kind="not_found_error")

    def check_model(self, model: str | None) -> None:
        if model is not None and model != self.service.name:
            raise RequestError(404, f"model: {model!r} is not served here; this server serves "
                                    f"{self.service.name!r}", param="model", kind="not_found_error")

    def submit(self, item):
        try:
            return self.batcher.submit(item)
        except QueueFull:
            raise RequestError(503, f"queue: full ({self.settings['max_queue']} requests waiting, --max-queue); "
                                    f"retry later", param=None, kind="server_busy") from None

    async def health(self):
        return {"status": "ok", "model": self.service.name, "task": self.service.task,
                "queue_depth": self.batcher.depth()}

    async def metrics(self):
        return {"model": self.service.name, "task": self.service.task, **self.stats.snapshot(),
                "settings": self.settings}

    async def models(self):
        return model_list(self.service.name, self.created)

    async def predict(self, request: Request):
        self.require("predict")
        body = parse_body(await request.body(), PredictRequest)
        self.check_model(body.model)
        texts = check_texts(body, self.limits)
        pairs = check_pairs(body, self.limits, self.service.paired)
        rows = await asyncio.wrap_future(self.submit(list(zip(texts, pairs or [None] * len(texts)))))
        return {"object": "predictions", "model": self.service.name, "task": self.service.task, "predictions": rows}

    async def completions(self, request: Request):
        return await self.generate(request, chat=False)

    async def chat_completions(self, request: Request):
        return await self.generate(request, chat=True)

    async def generate(self, request: Request, chat: bool):
        self.require("generate")
        body = parse_body(await request.body(), ChatRequest if chat else CompletionRequest)
        self.check_model(body.model)
        max_tokens = check_generation(body, self.limits)
        prompt = body.conversation() if chat else body.prompt_text()
        ids = self.service.encode(prompt, "messages" if chat else "prompt", self.limits)
        seed = body.seed if body.seed is not None else secrets.randbelow(2**31)
        job = GenerationJob(ids, max_tokens, body.temperature, body.top_p, seed, body.stop_strings(), chat)
        if not body.stream:
            return completion(self.service.name, await asyncio.wrap_future(self.submit(job)), chat)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return stream(job, self.submit, ChunkWriter(self.service.name, chat), include_usage)


def create_app(service, *, limits: Limits = Limits(), api_key: str | None = None, batch_window_ms: float = 0.0,
               max_batch_size: int = 32, max_queue: int = 256) -> FastAPI:
    stats = Stats()
    batcher = make_batcher(service, stats, window_ms=batch_window_ms, max_batch=max_batch_size,
                           max_queue=max_queue)
    stats.queue_depth = batcher.depth
    settings = {"batch_window_ms": batch_window_ms, "max_batch_size": max_batch_size, "max_queue": max_queue}
    endpoints = Endpoints(service, batcher, stats, limits, settings)

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        batcher.stop()

    app = FastAPI(title="tunesmith serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.stats, app.state.batcher, app.state.service = stats, batcher, service
    app.add_middleware(Guard, stats=stats, api_key=api_key, max_body_bytes=limits.max_body_bytes)
    add_error_handlers(app, service)
    for method, path, handler in (
            ("GET", "/health", endpoints.health), ("GET", "/metrics", endpoints.metrics),
            ("GET", "/v1/models", endpoints.models), ("POST", "/v1/predict", endpoints.predict),
            ("POST", "/v1/completions", endpoints.completions),
            ("POST", "/v1/chat/completions", endpoints.chat_completions)):
        app.add_api_route(path, handler, methods=[method])
    return app


def stream(job: GenerationJob, submit, writer: ChunkWriter, include_usage: bool) -> StreamingResponse:
    """Server-sent events of one answer as it is generated; the job is queued before the response starts (a
    full queue is still a 503), and stops when the client goes away."""
    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue = asyncio.Queue()
    job.on_delta = lambda text: loop.call_soon_threadsafe(pieces.put_nowait, text)
    future = submit(job)

    async def events():
        done = asyncio.wrap_future(future)
        try:
            start = writer.start()
            if start:
                yield start
            while not done.done():
                getter = asyncio.ensure_future(pieces.get())
                finished, _ = await asyncio.wait({getter, done}, return_when=asyncio.FIRST_COMPLETED)
                if getter in finished:
                    yield writer.piece(getter.result())
                else:
                    getter.cancel()
            while not pieces.empty():  # the worker queued its last pieces before it finished
                yield writer.piece(pieces.get_nowait())
            yield writer.finish(done.result(), include_usage)
        except RequestError as error:
            yield error_event(error.body())
        except Exception as exc:  # noqa: BLE001 - the stream has started: the error is its last event
            log.exception("a streamed answer failed")
            yield error_event({"error": {"message": f"internal error: {one_line(exc)}", "type": "server_error",
                                         "param": None, "code": 500}})
        finally:
            job.cancelled.set()  # done, or the client went away: stop generating

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def add_error_handlers(app: FastAPI, service) -> None:
    @app.exception_handler(RequestError)
    async def refused(request, error: RequestError):
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {"loc": ("body",), "msg": "invalid request"}
        field = ".".join(str(p) for p in first["loc"] if p != "body") or "body"
        return error_response(RequestError(400, f"{field}: {first['msg']}", param=field))

    @app.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException):
        path = request.url.path
        if exc.status_code == 404:
            message = f"path: {path} is not an endpoint; this server has {ENDPOINTS[service.kind]}, GET /v1/models, " \
                      f"GET /health, GET /metrics"
        elif exc.status_code == 405:
            message = f"method: {request.method} is not allowed on {path}"
        else:
            message = f"path: {exc.detail}"
        return error_response(RequestError(exc.status_code, message, param=message.split(":")[0],
                                           kind="invalid_request_error" if exc.status_code != 404 else "not_found_error"))
