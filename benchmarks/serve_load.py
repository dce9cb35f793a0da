"""`tunesmith serve` under load: requests/s and p50/p99 latency of POST /v1/predict at 1, 8 and 32 concurrent
clients, dynamic batching on vs off, for a run and (optionally) its export.

Each (target, batching) pair gets its own server process (`tunesmith serve ... --port P` on 127.0.0.1); the
clients are threads of this process, one keep-alive connection each, one text per request (texts from the
shipped SMS Spam file unless --texts FILE, one per line). Batching "queued" (the default):
--batch-window-ms 0 --max-batch-size 32 (each pass takes what queued during the one before); "window 5 ms":
--batch-window-ms 5; "off": --max-batch-size 1 (one request per forward pass). Warm-up requests are not counted.

    python benchmarks/serve_load.py --run runs/sms_spam --export runs/sms_spam/exports/int8
    python benchmarks/serve_load.py --run RUN --quick            # a smoke run: tiny counts, not a measurement
    options: --requests N (per concurrency level, default 512), --concurrency 1 8 32, --output results.json

Prints one JSON object per measurement, then a markdown table (for docs/benchmarks.md); --output writes all
of them as one JSON file. Run it on an otherwise idle machine: the clients share it with the server.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SMS = REPO / "data" / "sms_spam" / "SMSSpamCollection"
MODES = {"queued": ["--batch-window-ms", "0", "--max-batch-size", "32"],  # the default: what queued during a pass
         "window 5 ms": ["--batch-window-ms", "5", "--max-batch-size", "32"],
         "off": ["--batch-window-ms", "0", "--max-batch-size", "1"]}


def load_texts(path: str | None, limit: int = 512) -> list[str]:
    if path:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    else:
        lines = [line.split("\t", 1)[1] for line in SMS.read_text(encoding="utf-8").splitlines() if "\t" in line]
    texts = [line.strip() for line in lines if line.strip()][:limit]
    if not texts:
        sys.exit(f"no texts in {path or SMS}")
    return texts


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`tunesmith serve TARGET` in its own process, until stop()."""

    def __init__(self, target: str, mode: str):
        self.port = free_port()
        env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"}
        env.pop("TUNESMITH_API_KEY", None)
        command = [sys.executable, "-m", "tunesmith.cli", "serve", target, "--port", str(self.port),
                   "--max-queue", "4096", *MODES[mode]]
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 300
        while not self.healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"the server did not start: {self.process.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)

    def healthy(self) -> bool:
        try:
            return get(self.port, "/health")[0] == 200
        except OSError:
            return False

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()


def get(port: int, path: str) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def load(port: int, texts: list[str], clients: int, requests: int) -> dict:
    """`requests` POSTs spread over `clients` threads; throughput and latency percentiles."""
    latencies: list[float] = []
    failures = []
    lock = threading.Lock()
    share = [requests // clients + (i < requests % clients) for i in range(clients)]
    barrier = threading.Barrier(clients + 1)

    def client(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        barrier.wait()
        for k in range(share[index]):
            body = json.dumps({"texts": [texts[(index * 7919 + k) % len(texts)]]})
            began = time.perf_counter()
            try:
                connection.request("POST", "/v1/predict", body=body, headers={"Content-Type": "application/json"})
                response = connection.getresponse()
                payload = response.read()
                ok = response.status == 200 and len(json.loads(payload)["predictions"]) == 1
            except (OSError, http.client.HTTPException, ValueError) as exc:
                ok, payload = False, str(exc).encode()
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            elapsed = time.perf_counter() - began
            with lock:
                latencies.append(elapsed) if ok else failures.append(payload[:200])
        connection.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join(900)
    wall = time.perf_counter() - began
    ms = np.asarray(latencies) * 1000 if latencies else np.zeros(1)
    return {"clients": clients, "requests": requests, "failed": len(failures), "wall_s": round(wall, 3),
            "requests_per_s": round(len(latencies) / wall, 2), "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2)}


def measure(label: str, target: str, mode: str, texts: list[str], levels: list[int], requests: int,
            warmup: int) -> list[dict]:
    server = Server(target, mode)
    try:
        load(server.port, texts, 1, warmup)
        results = []
        for clients in levels:
            before = get(server.port, "/metrics")[1]["batches"]
            result = load(server.port, texts, clients, requests)
            after = get(server.port, "/metrics")[1]["batches"]
            passes = after["forward_passes"] - before["forward_passes"]
            result.update(target=label, batching=mode, forward_passes=passes,
                          texts_per_pass=round((after["texts"] - before["texts"]) / passes, 2) if passes else 0.0)
            print(json.dumps(result), flush=True)
            results.append(result)
        return results
    finally:
        server.stop()


def table(results: list[dict]) -> str:
    lines = ["| target | batching | clients | requests/s | p50 ms | p99 ms | texts per pass | failed |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['target']} | {r['batching']} | {r['clients']} | {r['requests_per_s']} | {r['p50_ms']} | "
                     f"{r['p99_ms']} | {r['texts_per_pass']} | {r['failed']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="a run directory of a predicting task (e.g. runs/sms_spam)")
    parser.add_argument("--export", help="an export of it (e.g. runs/sms_spam/exports/int8), measured too")
    parser.add_argument("--texts", help="texts to send, one per line (default: the shipped SMS Spam texts)")
    parser.add_argument("--requests", type=int, default=512, help="requests per concurrency level (default 512)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--warmup", type=int, default=32, help="uncounted requests first (default 32)")
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--quick", action="store_true", help="a smoke run: 16 requests per level, 4 warm-up")
    parser.add_argument("--output", help="write every measurement to this JSON file")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.warmup = 16, 4
    texts = load_texts(args.texts)
    targets = [("torch run", args.run)] + ([(f"export ({Path(args.export).name})", args.export)] if args.export else [])
    results = []
    for label, target in targets:
        for mode in args.modes:
            results += measure(label, target, mode, texts, args.concurrency, args.requests, args.warmup)
    print(table(results))
    if args.output:
        Path(args.output).write_text(json.dumps({"texts": len(texts), "results": results}, indent=1) + "\n")
    return 1 if any(r["failed"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
