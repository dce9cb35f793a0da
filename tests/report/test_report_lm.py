"""The report of a language-model run (eval.json with perplexity and generations), from a run directory written here."""

from __future__ import annotations

import json
import math
import re

import yaml

from tunesmith.report import write_report


def test_language_model_report_has_perplexity_and_generations(tmp_path):
    run = tmp_path / "lm"
    run.mkdir()
    (run / "recipe.yaml").write_text(yaml.safe_dump({"model": "smollm2", "task": "causal_lm", "output": str(run)}))
    records = [{"type": "train", "step": s, "loss": 3.0 - s / 20, "lr": 1e-4} for s in range(1, 21)]
    records += [{"type": "eval", "split": "validation", "step": s, "loss": 2.9 - s / 25,
                 "perplexity": math.exp(2.9 - s / 25)} for s in (10, 20)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + '{"type": "tr')  # torn line
    result = {"task": "causal_lm", "model": "smollm2", "best": {"metric": "loss", "value": 2.1, "step": 20},
              "stop_reason": "finished the budget of 20 steps (1 epochs)", "steps": 20, "epochs": 1.0,
              "validation": {"loss": 2.1, "perplexity": math.exp(2.1), "n": 32},
              "baselines": {"validation": {"pretrained": {"loss": 2.9, "perplexity": math.exp(2.9), "tokens": 900}}},
              "generations": [{"prompt": "Once upon a time", "reference": None, "before": "the the the",
                               "after": "a <b>fox</b> ran"}],
              "timing": {"total_s": 5.0, "train_s": 4.0}, "memory": {"peak_rss_mb": 1200.0},
              "environment": {"torch": "2.13.0"}}
    (run / "eval.json").write_text(json.dumps(result))
    page = write_report(run).read_text()
    sections = re.findall(r'<section id="([^"]+)"', page)
    assert {"summary", "recipe", "curves", "learning-rate", "perplexity", "generations", "stopping", "performance",
            "environment"} <= set(sections)
    assert not {"confusion", "per-class"} & set(sections)  # classification only
    assert page.count('<img src="data:image/png;base64,') >= 3  # loss, learning rate, perplexity
    assert "Once upon a time" in page and "a &lt;b&gt;fox&lt;/b&gt; ran" in page  # escaped, never raw HTML
    assert "1 unreadable line(s) skipped" in page
    assert "pretrained model, before fine-tuning" in page  # the LM task's baseline: perplexity before and after
