"""What /metrics reports: requests by endpoint and status, latency percentiles over the latest requests, the
forward passes the batcher ran (and how many requests and texts each held), and the queue depth."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque

import numpy as np

LATENCY_WINDOW = 10_000  # latencies kept for the percentiles (the latest requests)


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.started = time.time()
        self.requests: Counter = Counter()  # (path, status) -> count
        self.latencies: dict[str, deque] = {}
        self.batches = 0
        self.batched_requests = 0
        self.batched_texts = 0
        self.largest_batch = 0
        self.queue_depth = lambda: 0  # set by the app to its batcher's

    def record_request(self, path: str, status: int, seconds: float) -> None:
        with self.lock:
            self.requests[(path, status)] += 1
            self.latencies.setdefault(path, deque(maxlen=LATENCY_WINDOW)).append(seconds)

    def record_batch(self, requests: int, texts: int) -> None:
        with self.lock:
            self.batches += 1
            self.batched_requests += requests
            self.batched_texts += texts
            self.largest_batch = max(self.largest_batch, texts)

    def snapshot(self) -> dict:
        with self.lock:
            by_path: dict[str, dict] = {}
            for (path, status), count in sorted(self.requests.items()):
                entry = by_path.setdefault(path, {"requests": 0, "by_status": {}})
                entry["requests"] += count
                entry["by_status"][str(status)] = count
            for path, values in self.latencies.items():
                ms = np.asarray(values) * 1000
                by_path[path]["latency_ms"] = {f"p{q}": round(float(np.percentile(ms, q)), 3) for q in (50, 90, 99)}
            return {
                "uptime_s": round(time.time() - self.started, 1),
                "requests": sum(self.requests.values()),
                "errors": sum(c for (_, status), c in self.requests.items() if status >= 400),
                "endpoints": by_path,
                "queue_depth": self.queue_depth(),
                "batches": {"forward_passes": self.batches, "requests": self.batched_requests,
                            "texts": self.batched_texts, "largest": self.largest_batch,
                            "mean_texts": round(self.batched_texts / self.batches, 3) if self.batches else 0.0},
            }
