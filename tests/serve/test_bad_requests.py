"""Every refused request is a 4xx whose message names the field, never a 500 with a traceback, and the server
answers the next good request; an unexpected failure is a one-line 500 and the server keeps serving; a full
queue is a 503."""

from __future__ import annotations

import http.client
import json
import threading
import time

import pytest

from serve_helpers import request
from tunesmith.serve.app import create_app
from tunesmith.serve.schemas import Limits
from tunesmith.serve.server import BackgroundServer, load_service

LIMITS = Limits(max_body_bytes=4096, max_texts=4, max_text_chars=50)


@pytest.fixture(scope="module")
def server(classifier_run):
    with BackgroundServer(create_app(load_service(classifier_run), limits=LIMITS, api_key="k")) as running:
        yield running


AUTH = {"Authorization": "Bearer k"}

BAD = [  # (body, status, the message's start)
    (b'{"texts": ["a"', 400, "body: not valid JSON"),
    (b'["a", "b"]', 400, "body: must be a JSON object"),
    (b"[" * 2000 + b"]" * 2000, 400, "body: not valid JSON"),  # nesting past the JSON parser's depth
    ({"texts": "a single string"}, 400, "texts: Input should be a valid list"),
    ({"texts": ["fine", 3]}, 400, "texts[1]: Input should be a valid string"),
    ({"texts": [None]}, 400, "texts[0]: Input should be a valid string"),
    ({}, 400, "texts: Field required"),
    ({"texts": []}, 400, "texts: give at least one text"),
    ({"texts": ["   "]}, 400, "texts[0]: empty text"),
    ({"texts": ["a"] * 5}, 400, "texts: 5 texts; at most 4 per request (--max-texts)"),
    ({"texts": ["ok", "x" * 51]}, 400, "texts[1]: 51 characters; at most 50 (--max-text-chars)"),
    ({"texts": ["ok"], "pairs": ["b"]}, 400, "pairs: not supported by this server"),
    ({"texts": ["ok"], "text_pairs": ["b"]}, 400, "text_pairs: this run was trained on single texts; send texts only"),
    ({"texts": ["ok"], "model": "other"}, 404, "model: 'other' is not served here"),
    ({"texts": ["x" * 40] * 2, "padding": "y" * 5000}, 413, "body: over this server's limit of 4096 bytes"),
]


@pytest.mark.parametrize("body,status,message", BAD, ids=[b[2].split(":")[0] + str(i) for i, b in enumerate(BAD)])
def test_a_bad_request_is_a_4xx_naming_the_field_and_the_next_one_is_served(server, body, status, message):
    got, answer = request(server.url + "/v1/predict", body, headers=AUTH)
    assert got == status, answer
    assert answer["error"]["message"].startswith(message), answer
    assert "Traceback" not in json.dumps(answer)
    assert request(server.url + "/v1/predict", {"texts": ["great movie"]}, headers=AUTH)[0] == 200


def test_a_body_sent_in_chunks_is_capped_as_it_arrives(server):
    """No Content-Length (chunked transfer): the cap is counted on the bytes received."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    chunks = [b'{"texts": ["', b"x" * 3000, b"y" * 3000, b'"]}']
    connection.request("POST", "/v1/predict", body=iter(chunks), headers={**AUTH, "Content-Type": "application/json"},
                       encode_chunked=True)
    response = connection.getresponse()
    assert response.status == 413 and b"over this server's limit" in response.read()
    connection.close()


def test_wrong_paths_methods_and_keys(server):
    assert request(server.url + "/v1/nothing", {}, headers=AUTH)[1]["error"]["message"].startswith(
        "path: /v1/nothing is not an endpoint")
    status, body = request(server.url + "/v1/predict", method="GET", headers=AUTH)
    assert status == 405 and body["error"]["message"] == "method: GET is not allowed on /v1/predict"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "k"}):
        status, body = request(server.url + "/v1/predict", {"texts": ["a"]}, headers=headers)
        assert status == 401 and body["error"]["message"].startswith("authorization: missing or wrong API key")
    status, body = request(server.url + "/v1/completions", {"model": "sentiment", "prompt": "hi"}, headers=AUTH)
    assert status == 404 and "serves a classification run; its endpoints are POST /v1/predict" in \
        body["error"]["message"]
    metrics = request(server.url + "/metrics", headers=AUTH)[1]
    assert metrics["endpoints"]["/v1/predict"]["by_status"]["401"] >= 3 and metrics["errors"] >= 6


class FakeService:
    """A predicting service whose forward pass waits for `release` (and fails on the text 'boom')."""

    kind, task, name, paired = "predict", "classification", "fake", False

    def __init__(self):
        self.release = threading.Event()

    def predict_batch(self, requests):  # each request: [(text, None), ...]
        self.release.wait(30)
        if any(text == "boom" for items in requests for text, _ in items):
            raise RuntimeError("the model\nexploded")
        return [[{"prediction": text} for text, _ in items] for items in requests]


def test_an_unexpected_failure_is_a_one_line_500_and_the_others_are_still_answered():
    service = FakeService()
    service.release.set()
    with BackgroundServer(create_app(service, batch_window_ms=200)) as running:
        results = {}

        def post(text):
            results[text] = request(running.url + "/v1/predict", {"texts": [text]})

        threads = [threading.Thread(target=post, args=(t,)) for t in ("a", "boom", "c")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert results["boom"] == (500, {"error": {"message": "internal error: RuntimeError: the model exploded",
                                               "type": "server_error", "param": None, "code": 500}})
    assert results["a"] == (200, {"object": "predictions", "model": "fake", "task": "classification",
                                  "predictions": [{"prediction": "a"}]})
    assert results["c"][1]["predictions"] == [{"prediction": "c"}]


def test_a_full_queue_is_a_503_and_the_queued_requests_are_still_answered():
    service = FakeService()
    with BackgroundServer(create_app(service, batch_window_ms=0, max_batch_size=1, max_queue=2)) as running:
        answers = []
        threads = [threading.Thread(target=lambda t=t: answers.append(request(running.url + "/v1/predict",
                                                                               {"texts": [t]})))
                   for t in ("first", "second", "third")]
        for thread in threads:  # one in the forward pass, two waiting: the queue is full
            thread.start()
            time.sleep(0.3)
        deadline = time.monotonic() + 20
        while request(running.url + "/health")[1]["queue_depth"] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        status, body = request(running.url + "/v1/predict", {"texts": ["fourth"]})
        assert status == 503 and body["error"]["message"].startswith("queue: full (2 requests waiting, --max-queue)")
        service.release.set()
        for thread in threads:
            thread.join(30)
    assert sorted(a[1]["predictions"][0]["prediction"] for a in answers) == ["first", "second", "third"]
