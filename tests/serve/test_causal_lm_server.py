"""A causal_lm run (tiny GPT-2, no chat template): completions continue the raw prompt as `tunesmith generate
--no-chat` does, chat completions are refused by name, prompts past the model's positions are refused (not cut),
and a streaming client that goes away stops the generation."""

from __future__ import annotations

import http.client
import json
import threading
import time

import openai
import pytest

from tunesmith.recipes.generate import TrainedLM
from tunesmith.serve.app import create_app
from tunesmith.serve.server import BackgroundServer, load_service


@pytest.fixture(scope="module")
def served(causal_run):
    service = load_service(causal_run)
    results, run = [], service.run

    def recording(job):  # what each generation ended with, seen from the worker
        result = run(job)
        results.append(result)
        return result

    service.run = recording
    with BackgroundServer(create_app(service)) as running:
        yield running, service, results


@pytest.fixture(scope="module")
def client(served):
    return openai.OpenAI(base_url=served[0].url + "/v1", api_key="unused", max_retries=0, timeout=60)


def test_completions_continue_the_raw_prompt(client, causal_run):
    result = client.completions.create(model="poet", prompt="ROMEO:", max_tokens=10, temperature=0)
    assert result.choices[0].text == TrainedLM(causal_run).generate(["ROMEO:"], chat=False, temperature=0,
                                                                    max_new_tokens=10)[0]


def test_chat_is_refused_without_a_chat_template(client):
    with pytest.raises(openai.BadRequestError, match="messages: this causal_lm run's tokenizer has no chat template; "
                                                     "use /v1/completions"):
        client.chat.completions.create(model="poet", messages=[{"role": "user", "content": "hi"}])


def test_a_prompt_past_the_models_positions_is_refused(client, served):
    limit = served[1].positions  # the tiny GPT-2's 128 positions: at most 127 prompt tokens
    with pytest.raises(openai.BadRequestError, match=f"prompt: the prompt is \\d+ tokens; at most {limit - 1} "):
        client.completions.create(model="poet", prompt="ROMEO: " * 100)


def test_a_streaming_client_that_goes_away_stops_the_generation(served, client):
    running, service, results = served
    whole = client.completions.create(model="poet", prompt="ROMEO:", max_tokens=120, temperature=0)
    assert whole.usage.completion_tokens == 120  # left alone, the answer runs to max_tokens
    forward = service.model.forward

    def slow_forward(*args, **kwargs):  # ~20 ms a token: 120 tokens would take over 2 s
        time.sleep(0.02)
        return forward(*args, **kwargs)

    service.model.forward = slow_forward
    try:
        results.clear()
        connection = http.client.HTTPConnection("127.0.0.1", running.port, timeout=30)
        body = {"model": "poet", "prompt": "ROMEO:", "max_tokens": 120, "temperature": 0, "stream": True}
        connection.request("POST", "/v1/completions", body=json.dumps(body),
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 200 and response.readline().startswith(b"data: ")
        connection.sock.shutdown(2)  # the client goes away mid-answer
        connection.close()
        deadline = time.monotonic() + 30
        while not results and time.monotonic() < deadline:
            time.sleep(0.05)
        assert results and results[0]["completion_tokens"] < 100, results
    finally:
        del service.model.forward
    status = http.client.HTTPConnection("127.0.0.1", running.port, timeout=30)
    status.request("GET", "/health")
    assert json.loads(status.getresponse().read())["queue_depth"] == 0
