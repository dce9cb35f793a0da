"""The `tunesmith serve` command: a run or export directory behind HTTP (tunesmith.serve)."""

from __future__ import annotations

import argparse
import os

from tunesmith.cli.arg_types import finite_non_negative, positive_int
from tunesmith.errors import shown

API_KEY_ENV = "TUNESMITH_API_KEY"


def port_number(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 0 to 65535 (got {shown(text)})")
    return int(text)


def add_parser(commands) -> None:
    serve = commands.add_parser("serve", help="serve a run or export over HTTP (/v1/predict, or OpenAI-compatible "
                                              "/v1/completions and /v1/chat/completions)")
    serve.add_argument("run", help="run directory (`tunesmith train`) or export directory (`tunesmith export`)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine "
                                                           "only; any other needs --api-key)")
    serve.add_argument("--port", type=port_number, default=8000, help="port (default 8000; 0: any free port)")
    serve.add_argument("--api-key", default=None,
                       help=f"require 'Authorization: Bearer KEY' on every endpoint but /health "
                            f"(default: ${API_KEY_ENV}, else none)")
    serve.add_argument("--model-name", default=None, help="the model id clients send (default: the directory's name)")
    serve.add_argument("--batch-window-ms", type=finite_non_negative, default=0.0,
                       help="how long the first waiting request waits for others to share its forward pass "
                            "(predict; greedy non-streaming generation). Default 0: each pass takes the requests "
                            "that queued during the one before (measured faster than a 5 ms window at 1, 8 and 32 "
                            "clients: docs/benchmarks.md); --max-batch-size 1: batching off")
    serve.add_argument("--max-batch-size", type=positive_int, default=32,
                       help="texts (predict) or greedy requests (generation) per forward pass (default 32)")
    serve.add_argument("--max-queue", type=positive_int, default=256,
                       help="requests waiting at most; more get 503 (default 256)")
    serve.add_argument("--max-texts", type=positive_int, default=64, help="texts per /v1/predict request (default 64)")
    serve.add_argument("--max-text-chars", type=positive_int, default=10_000,
                       help="characters per text (default 10000)")
    serve.add_argument("--max-tokens", type=positive_int, default=512,
                       help="max_tokens a completion may ask for, and its default (default 512)")
    serve.add_argument("--max-prompt-tokens", type=positive_int, default=2048,
                       help="prompt tokens (default 2048; never more than the model's positions - 1)")
    serve.add_argument("--max-body-bytes", type=positive_int, default=1 << 20,
                       help="request body size (default 1048576)")


def cmd_serve(args) -> int:
    from tunesmith.serve.schemas import Limits
    from tunesmith.serve.server import check_host, check_port, load_service, uvicorn_server

    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    check_host(args.host, api_key)  # before the model loads
    check_port(args.host, args.port)
    limits = Limits(max_body_bytes=args.max_body_bytes, max_texts=args.max_texts, max_text_chars=args.max_text_chars,
                    max_tokens=args.max_tokens, max_prompt_tokens=args.max_prompt_tokens)
    service = load_service(args.run, name=args.model_name)

    from tunesmith.cli.tables import console
    from tunesmith.serve.app import ENDPOINTS, create_app

    app = create_app(service, limits=limits, api_key=api_key, batch_window_ms=args.batch_window_ms,
                     max_batch_size=args.max_batch_size, max_queue=args.max_queue)
    console.print(f"serving {service.name} ({service.task}) on http://{args.host}:{args.port}: "
                  f"{ENDPOINTS[service.kind]}, GET /v1/models, /health, /metrics"
                  f"{'; API key required' if api_key else ''}", soft_wrap=True, markup=False)
    uvicorn_server(app, args.host, args.port).run()
    return 0


COMMANDS = {"serve": cmd_serve}
