"""The dynamic batcher and the streamed text, without a server: what a window collects, the batch-size cap,
the bounded queue, a failing batch retried request by request; stop strings held back while streaming."""

from __future__ import annotations

import pytest

from tunesmith.serve.batching import Batcher, QueueFull
from tunesmith.serve.generator import GrowingText


def echo_batches(calls):
    def run(items):
        calls.append(list(items))
        return [f"done {item}" for item in items]
    return run


def test_requests_waiting_together_share_one_call_and_the_size_cap_holds():
    calls = []
    batcher = Batcher(echo_batches(calls), window_ms=0, max_batch=5, size=len)
    futures = [batcher.submit(item) for item in (["a", "b"], ["c"], ["d", "e"], ["f"])]  # queued before the start
    batcher.start()
    assert [f.result(10) for f in futures] == ["done ['a', 'b']", "done ['c']", "done ['d', 'e']", "done ['f']"]
    batcher.stop()
    assert calls == [[["a", "b"], ["c"], ["d", "e"]], [["f"]]]  # 5 texts, then the one that did not fit


def test_the_window_collects_requests_that_arrive_within_it():
    calls = []
    batcher = Batcher(echo_batches(calls), window_ms=300, max_batch=10).start()
    first = batcher.submit("x")
    second = batcher.submit("y")  # arrives while the first waits in its window
    assert (first.result(10), second.result(10)) == ("done x", "done y")
    batcher.stop()
    assert calls == [["x", "y"]]


def test_a_full_queue_refuses_at_once():
    batcher = Batcher(echo_batches([]), max_queue=2)  # not started: nothing leaves the queue
    batcher.submit(1), batcher.submit(2)
    with pytest.raises(QueueFull):
        batcher.submit(3)
    assert batcher.depth() == 2


def test_a_failing_batch_is_retried_alone_so_only_the_bad_request_fails():
    calls = []

    def run(items):
        calls.append(list(items))
        if "bad" in items:
            raise ValueError("bad input")
        return [item.upper() for item in items]

    batcher = Batcher(run, window_ms=0, max_batch=8)
    futures = [batcher.submit(item) for item in ("a", "bad", "c")]
    batcher.start()
    assert futures[0].result(10) == "A" and futures[2].result(10) == "C"
    with pytest.raises(ValueError, match="bad input"):
        futures[1].result(10)
    batcher.stop()
    assert calls == [["a", "bad", "c"], ["a"], ["bad"], ["c"]]


class CharTokenizer:
    """One token per character; token 0 is a special token (dropped when decoding)."""

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(i) for i in ids if i != 0)


def feed(text: str, stops: list[str]) -> tuple[list[str], GrowingText]:
    growing, pieces = GrowingText(CharTokenizer(), stops), []
    for char in text:
        growing.ids.append(ord(char))
        pieces.append(growing.delta())
        if growing.hit_stop:
            break
    pieces.append(growing.delta(final=True))
    return pieces, growing


def test_a_stop_string_is_held_back_while_it_may_still_appear_and_never_sent():
    pieces, growing = feed("hello ENDworld", ["END"])
    assert "".join(pieces) == "hello " and growing.hit_stop
    assert pieces[:7] == ["h", "e", "l", "l", "o", " ", ""]  # "E" held back: it may start "END"
    assert "E" not in "".join(pieces)


def test_a_false_start_of_a_stop_string_is_sent_once_it_cannot_match():
    pieces, growing = feed("an EN dash", ["END"])
    assert "".join(pieces) == "an EN dash" and not growing.hit_stop
    assert pieces[3:6] == ["", "", "EN "]  # "E", "EN" held, then sent with the space


def test_the_earliest_stop_string_wins_and_special_tokens_are_dropped():
    growing = GrowingText(CharTokenizer(), ["world", "lo"])
    growing.ids = [ord(c) for c in "hello world"] + [0]
    assert growing.delta(final=True) == "hel" and growing.hit_stop


def test_a_chat_template_that_refuses_the_messages_is_a_400_naming_them():
    from types import SimpleNamespace

    from tunesmith.serve.generator import GenerateService
    from tunesmith.serve.schemas import Limits, RequestError

    class Refusing:
        chat_template = "{{ raise_exception('Conversation roles must alternate user/assistant') }}"

        def apply_chat_template(self, *args, **kwargs):
            from jinja2.exceptions import TemplateError

            raise TemplateError("Conversation roles must alternate user/assistant")

    lm = SimpleNamespace(model=SimpleNamespace(config=SimpleNamespace(max_position_embeddings=64)),
                         tokenizer=Refusing(), recipe=SimpleNamespace(task="sft"))
    service = GenerateService(lm, "chat")
    with pytest.raises(RequestError, match="^messages: the run's chat template cannot render them \\(TemplateError: "
                                           "Conversation roles must alternate user/assistant\\)$") as refused:
        service.encode([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "messages", Limits())
    assert refused.value.status == 400 and refused.value.param == "messages"
