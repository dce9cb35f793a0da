"""The OpenAI-compatible endpoints through the official `openai` client over real HTTP (127.0.0.1): the texts
`tunesmith generate` gives, streaming that joins to the same text, seeds, stop strings, usage, the model list,
the API key, and refused requests as the client's own error classes."""

from __future__ import annotations

import openai
import pytest

from tunesmith.recipes.generate import TrainedLM
from tunesmith.serve.app import create_app
from tunesmith.serve.schemas import Limits
from tunesmith.serve.server import BackgroundServer, load_service

KEY = "test-key-123"
PROMPT = "say the word"
CHAT = [{"role": "user", "content": "say the word two"}]


@pytest.fixture(scope="module")
def lm(sft_run):
    return TrainedLM(sft_run)


@pytest.fixture(scope="module")
def server(sft_run):
    app = create_app(load_service(sft_run), api_key=KEY, limits=Limits(max_tokens=32, max_prompt_tokens=40))
    with BackgroundServer(app) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def model(sft_run):
    return sft_run.name


def test_models_list_names_the_served_run(client, model):
    assert [m.id for m in client.models.list()] == [model]


def test_a_greedy_completion_is_the_text_tunesmith_generate_gives(client, model, lm):
    result = client.completions.create(model=model, prompt=PROMPT, max_tokens=12, temperature=0)
    want = lm.generate([PROMPT], chat=False, temperature=0, max_new_tokens=12)[0]
    assert want and result.choices[0].text == want
    usage = result.usage
    assert usage.prompt_tokens == len(lm.tokenizer(PROMPT)["input_ids"])
    assert 1 <= usage.completion_tokens <= 12 and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert result.choices[0].finish_reason == ("length" if usage.completion_tokens == 12 else "stop")


def test_chat_uses_the_runs_chat_template(client, model, lm):
    result = client.chat.completions.create(model=model, messages=CHAT, max_tokens=12, temperature=0)
    message = result.choices[0].message
    assert message.role == "assistant"
    assert message.content == lm.generate([CHAT[0]["content"]], chat=True, temperature=0, max_new_tokens=12)[0]
    rendered = lm.tokenizer.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    assert result.usage.prompt_tokens == len(lm.tokenizer(rendered, add_special_tokens=False)["input_ids"])


def test_a_seeded_sample_is_repeatable_and_the_same_as_tunesmith_generate(client, model, lm):
    settings = {"temperature": 0.9, "top_p": 0.95, "seed": 7, "max_tokens": 12}
    first = client.completions.create(model=model, prompt=PROMPT, **settings).choices[0].text
    again = client.completions.create(model=model, prompt=PROMPT, **settings).choices[0].text
    assert first == again == lm.generate([PROMPT], chat=False, temperature=0.9, top_p=0.95, seed=7,
                                          max_new_tokens=12)[0]


def streamed(chunks, chat: bool) -> tuple[str, str | None]:
    text, finish = "", None
    for chunk in chunks:
        for choice in chunk.choices:
            text += (choice.delta.content or "") if chat else choice.text
            finish = choice.finish_reason or finish
    return text, finish


@pytest.mark.parametrize("chat", [False, True])
def test_streaming_joins_to_the_non_streaming_text(client, model, chat):
    def create(**extra):
        if chat:
            return client.chat.completions.create(model=model, messages=CHAT, max_tokens=16, temperature=0, **extra)
        return client.completions.create(model=model, prompt=PROMPT, max_tokens=16, temperature=0, **extra)

    whole = create()
    chunks = list(create(stream=True, stream_options={"include_usage": True}))
    text, finish = streamed(chunks, chat)
    choice = whole.choices[0]
    assert text == (choice.message.content if chat else choice.text) and finish == choice.finish_reason
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens  # include_usage: the last chunk
    assert len({chunk.id for chunk in chunks}) == 1
    assert chat or len([c for c in chunks if c.choices and c.choices[0].text]) > 2, "the text came in pieces"


def test_a_stop_string_cuts_the_text_and_ends_generation(client, model):
    full = client.completions.create(model=model, prompt=PROMPT, max_tokens=16, temperature=0)
    text = full.choices[0].text
    # a two-character piece from inside the greedy text, first seen after its start
    stop = next(text[i:i + 2] for i in range(1, len(text) - 1) if text.index(text[i:i + 2]) == i)
    assert text[:text.index(stop)], text
    cut = client.completions.create(model=model, prompt=PROMPT, max_tokens=16, temperature=0, stop=[stop, "@@@"])
    assert cut.choices[0].text == text[:text.index(stop)]
    assert cut.choices[0].finish_reason == "stop" and cut.usage.completion_tokens <= full.usage.completion_tokens
    chunks = client.completions.create(model=model, prompt=PROMPT, max_tokens=16, temperature=0, stop=stop,
                                       stream=True)
    assert streamed(chunks, chat=False) == (text[:text.index(stop)], "stop")


def test_refused_requests_are_the_clients_errors_naming_the_field(client, model):
    with pytest.raises(openai.BadRequestError, match="max_tokens: 33 is over this server's cap of 32"):
        client.completions.create(model=model, prompt=PROMPT, max_tokens=33)
    with pytest.raises(openai.BadRequestError, match="n: only n=1 is supported"):
        client.completions.create(model=model, prompt=PROMPT, n=2)
    with pytest.raises(openai.BadRequestError, match="prompt: the prompt is .* tokens; at most 40"):
        client.completions.create(model=model, prompt="word " * 60)
    with pytest.raises(openai.BadRequestError, match="messages\\[0\\].role"):
        client.chat.completions.create(model=model, messages=[{"role": "robot", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="logprobs: not supported by this server"):
        client.completions.create(model=model, prompt=PROMPT, logprobs=2)
    with pytest.raises(openai.NotFoundError, match="model: 'gpt-4' is not served here"):
        client.completions.create(model="gpt-4", prompt=PROMPT)
    with pytest.raises(openai.BadRequestError, match="temperature: Input should be less than or equal to 2"):
        client.chat.completions.create(model=model, messages=CHAT, temperature=3)
    assert client.completions.create(model=model, prompt=PROMPT, max_tokens=2, temperature=0).choices[0].text


def test_the_api_key_is_required(server, model):
    for key in ("wrong", ""):
        other = openai.OpenAI(base_url=server.url + "/v1", api_key=key or "x", max_retries=0,
                              default_headers={} if key else {"Authorization": ""})
        with pytest.raises(openai.AuthenticationError, match="missing or wrong API key"):
            other.models.list()


def test_predict_is_not_an_endpoint_of_a_generating_run(server):
    from serve_helpers import request

    status, body = request(server.url + "/v1/predict", {"texts": ["x"]}, headers={"Authorization": f"Bearer {KEY}"})
    assert status == 404 and "serves a sft run" in body["error"]["message"]
    status, body = request(server.url + "/health")  # open without the key
    assert status == 200 and body["status"] == "ok"


def test_concurrent_greedy_requests_share_generate_calls_and_get_the_answers_they_get_alone(sft_run):
    """Left-padded batches of greedy requests (prompts of different lengths, different max_tokens, a stop string,
    chat and plain) give each request exactly the answer it gets when it is alone."""
    import threading

    from serve_helpers import request

    requests = [("/v1/completions", {"prompt": "say the word", "max_tokens": 12}),
                ("/v1/completions", {"prompt": "ROMEO: say a word to me, and the word be two", "max_tokens": 6}),
                ("/v1/completions", {"prompt": "a", "max_tokens": 16}),  # + a stop string from its own text
                ("/v1/completions", {"prompt": "say the word three twice", "max_tokens": 9}),
                ("/v1/chat/completions", {"messages": CHAT, "max_tokens": 8}),
                ("/v1/chat/completions", {"messages": [{"role": "user", "content": "say the word nine twice"}],
                                          "max_tokens": 12})]
    bodies = [(path, {"model": sft_run.name, "temperature": 0, **body}) for path, body in requests]
    with BackgroundServer(create_app(load_service(sft_run), batch_window_ms=300, max_batch_size=8)) as running:
        text = request(running.url + bodies[2][0], bodies[2][1])[1]["choices"][0]["text"]
        stop = next(text[i:i + 2] for i in range(1, len(text) - 1) if text.index(text[i:i + 2]) == i)
        bodies[2][1]["stop"] = [stop]
        alone = [request(running.url + path, body) for path, body in bodies]  # one after another: each alone
        before = request(running.url + "/metrics")[1]["batches"]["forward_passes"]
        together: list = [None] * len(bodies)
        barrier = threading.Barrier(len(bodies))

        def client(i):
            barrier.wait(30)
            together[i] = request(running.url + bodies[i][0], bodies[i][1])

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(len(bodies))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        passes = request(running.url + "/metrics")[1]["batches"]["forward_passes"] - before
    assert passes < len(bodies), "no generate call was shared"
    for (status_alone, one), (status_together, other) in zip(alone, together):
        assert status_alone == status_together == 200
        assert one["choices"][0] == other["choices"][0] and one["usage"] == other["usage"]
    assert {a[1]["choices"][0]["finish_reason"] for a in alone} == {"stop", "length"}
    assert alone[2][1]["choices"][0] == {"index": 0, "text": text[:text.index(stop)], "finish_reason": "stop",
                                         "logprobs": None}  # cut at the stop string, in the batch too
