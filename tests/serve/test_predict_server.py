"""/v1/predict over real HTTP: the numbers `tunesmith predict` gives (a run, its int8 export, a token
classifier's entities with character offsets), dynamic batching (fewer forward passes than requests, each
request its own answer), and a bounded load test."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from serve_helpers import request, train
from tunesmith.recipes.predict import TrainedRun
from tunesmith.serve.app import create_app
from tunesmith.serve.server import BackgroundServer, load_service

TEXTS = ["the movie was great and wonderful", "awful, boring and sad", "a film", "best acting, love it really",
         "the worst plot, I hate it", "superb and happy story"]


@pytest.fixture(scope="module")
def server(classifier_run):
    app = create_app(load_service(classifier_run), batch_window_ms=50, max_batch_size=32)
    with BackgroundServer(app) as running:
        yield running


@pytest.fixture(scope="module")
def expected(classifier_run):
    """What `tunesmith predict` computes for each text, alone."""
    run = TrainedRun(classifier_run)
    return {text: run.predict_texts([text]).iloc[0] for text in TEXTS}


def check_rows(rows, frame):
    assert [row["prediction"] for row in rows] == list(frame["prediction"])
    labels = [c[len("prob_"):] for c in frame.columns if c.startswith("prob_")]
    assert labels and all(set(row["scores"]) == set(labels) for row in rows)
    for label in labels:
        np.testing.assert_allclose([row["scores"][label] for row in rows], frame[f"prob_{label}"], atol=1e-6)


def test_predict_gives_the_numbers_of_tunesmith_predict(server, classifier_run):
    status, body = request(server.url + "/v1/predict", {"texts": TEXTS})
    assert status == 200 and body["task"] == "classification" and body["model"] == classifier_run.name
    frame = TrainedRun(classifier_run).predict_texts(TEXTS)
    check_rows(body["predictions"], frame)
    assert set(frame["prediction"]) == {"pos", "neg"}  # the run learned the task: a wrong pairing would show


def test_an_int8_export_is_served_with_its_own_numbers(int8_export):
    with BackgroundServer(create_app(load_service(int8_export))) as running:
        status, body = request(running.url + "/v1/predict", {"texts": TEXTS})
        _, health = request(running.url + "/health")
    assert status == 200 and health["model"] == "sentiment-int8"
    check_rows(body["predictions"], TrainedRun(int8_export).predict_texts(TEXTS))


def test_token_classification_returns_entities_with_character_offsets(ner_run):
    texts = ["Mr. Smith went home in Paris.", "today Mr. Jones Evans said in Berlin ."]
    with BackgroundServer(create_app(load_service(ner_run))) as running:
        status, body = request(running.url + "/v1/predict", {"texts": texts})
    assert status == 200
    frame = TrainedRun(ner_run).predict_texts(texts)
    found = 0
    for text, row, entities, tags in zip(texts, body["predictions"], frame["entities"], frame["tags"]):
        assert row["entities"] == json.loads(entities) and row["tags"] == tags.split()
        assert row["prediction"] == frame["prediction"][texts.index(text)]
        found += len(row["entities"])
        for entity in row["entities"]:
            assert text[entity["start"]:entity["end"]] == entity["word"]
    assert found, "the tiny NER run finds entities (else the offsets go untested)"


def post_all(url: str, jobs: list[list[str]], timeout: float = 60) -> list:
    """Each job's texts posted from its own thread, all released at once; (status, body) per job."""
    results: list = [None] * len(jobs)
    barrier = threading.Barrier(len(jobs))

    def client(i):
        barrier.wait(timeout)
        results[i] = request(url + "/v1/predict", {"texts": jobs[i]}, timeout=timeout)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout * 2)
    assert not any(thread.is_alive() for thread in threads), "a client never got its answer"
    return results


def forward_passes(server) -> int:
    return request(server.url + "/metrics")[1]["batches"]["forward_passes"]


def test_concurrent_requests_share_forward_passes_and_get_their_own_answers(server, expected):
    before = forward_passes(server)
    jobs = [[TEXTS[i % len(TEXTS)]] for i in range(12)]
    results = post_all(server.url, jobs)
    passes = forward_passes(server) - before
    assert passes < len(jobs), f"{passes} forward passes for {len(jobs)} requests: nothing was batched"
    for job, (status, body) in zip(jobs, results):
        assert status == 200
        (row,) = body["predictions"]
        want = expected[job[0]]
        assert row["prediction"] == want["prediction"]
        assert row["scores"]["pos"] == pytest.approx(float(want["prob_pos"]), abs=1e-5)


def test_batching_off_runs_one_request_per_forward_pass(classifier_run, expected):
    app = create_app(load_service(classifier_run), batch_window_ms=0, max_batch_size=1)
    with BackgroundServer(app) as running:
        results = post_all(running.url, [[text] for text in TEXTS])
        assert forward_passes(running) == len(TEXTS)
    assert [body["predictions"][0]["prediction"] for _, body in results] == [expected[t]["prediction"] for t in TEXTS]


def test_a_bounded_load_of_concurrent_clients_loses_no_request(server, expected):
    """16 clients x 10 requests of 1-3 texts each, on 127.0.0.1: every request answered, each with its own texts'
    predictions, in order; the metrics count every one."""
    before = request(server.url + "/metrics")[1]["endpoints"]["/v1/predict"]["by_status"].get("200", 0)
    failures, answered = [], []
    lock = threading.Lock()

    def client(c):
        for r in range(10):
            texts = [TEXTS[(c + r + k) % len(TEXTS)] for k in range(1 + (c + r) % 3)]
            status, body = request(server.url + "/v1/predict", {"texts": texts}, timeout=60)
            with lock:
                if status != 200:
                    failures.append((status, body))
                    continue
                answered.append(1)
                got = [row["prediction"] for row in body["predictions"]]
                if got != [expected[t]["prediction"] for t in texts]:
                    failures.append(("wrong answer", texts, got))

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not any(thread.is_alive() for thread in threads), "the load test did not finish"
    assert not failures and len(answered) == 160
    metrics = request(server.url + "/metrics")[1]
    assert metrics["endpoints"]["/v1/predict"]["by_status"]["200"] - before == 160
    assert metrics["queue_depth"] == 0 and metrics["batches"]["largest"] <= 32


@pytest.mark.parametrize("task", ["regression", "multi_label"])
def test_regression_and_multi_label_runs_give_their_predict_columns(task, tiny_bert_dir, tmp_path):
    import task_fixtures

    case = getattr(task_fixtures, task)({"bert": tiny_bert_dir}, tmp_path)
    case["raw"]["train"].update(epochs=1)
    run = train(case["raw"])
    texts = [case["predict_text"], "the movie was boring", "guitar and football"]
    with BackgroundServer(create_app(load_service(run))) as running:
        status, body = request(running.url + "/v1/predict", {"texts": texts})
    assert status == 200 and body["task"] == task
    frame = TrainedRun(run).predict_texts(texts)
    rows = body["predictions"]
    if task == "regression":  # one target: `prediction` is the value in the user's units
        assert all(set(row) == {"prediction"} for row in rows)
        np.testing.assert_allclose([row["prediction"] for row in rows], frame["prediction"], atol=1e-5)
    else:  # the labels over their thresholds, joined as `tunesmith predict` writes them, and every label's score
        check_rows(rows, frame)


def test_a_run_trained_on_text_pairs_is_served_pairs(tiny_bert_dir, tmp_path):
    """Sentence-pair runs (data.columns text_pair, as STS-B): each text comes with its second text, and the
    numbers are `tunesmith predict`'s on the same pairs; single texts are refused by name."""
    import csv

    from pipeline_helpers import sentiment_rows, tiny_recipe

    rows = sentiment_rows(120, seed=4)
    path = tmp_path / "pairs.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["label", "text", "other"])
        for (label, text), (_, other) in zip(rows, sentiment_rows(120, seed=5)):
            writer.writerow([label, text, other])
    raw = tiny_recipe(tiny_bert_dir, path, tmp_path / "paired")
    raw["data"]["columns"] = {"text": "text", "text_pair": "other", "label": "label"}
    run = train(raw)
    seconds = ["a film", "the story", "it was", "and very", "plot", "acting"]
    with BackgroundServer(create_app(load_service(run), max_batch_size=32)) as running:
        status, body = request(running.url + "/v1/predict", {"texts": TEXTS, "text_pairs": seconds})
        single, refused = request(running.url + "/v1/predict", {"texts": TEXTS})
        short, uneven = request(running.url + "/v1/predict", {"texts": TEXTS, "text_pairs": seconds[:2]})
    assert status == 200
    check_rows(body["predictions"], TrainedRun(run).predict_texts(TEXTS, seconds))
    reversed_order = TrainedRun(run).predict_texts(seconds, TEXTS)  # the pair's order matters to the model
    assert not np.allclose(reversed_order["prob_pos"], [row["scores"]["pos"] for row in body["predictions"]])
    assert single == 400 and refused["error"]["message"].startswith("text_pairs: this run was trained on text pairs")
    assert short == 400 and uneven["error"]["message"] == "text_pairs: 2 second texts for 6 texts; give one per text"
