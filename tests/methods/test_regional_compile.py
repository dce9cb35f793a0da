"""method.compile: regional (methods/regional_compile.py) on the tiny random models, fp32.

Compiling costs seconds per model even for these, so the compiling tests are few: one step each of LoRA on Llama
and of full fine-tuning with gradient checkpointing on GPT-2 against eager, one small causal_lm run (straight,
interrupted and resumed) against an eager run, and a compiler that fails.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import safe_open
from torch._dynamo.utils import counters
from transformers import AutoModelForCausalLM

from lm_helpers import lm_recipe, shakespeare_slice
from tunesmith.cli import main
from tunesmith.config.method import MethodSpec
from tunesmith.config.recipe import validate_recipe
from tunesmith.errors import RecipeError
from tunesmith.methods import apply_method
from tunesmith.methods.regional_compile import is_compiled, repeated_blocks
from tunesmith.models import load_for_classification

TOLERANCE = 1e-5


def causal_lm(model_dir):
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    for module in model.modules():  # Inductor draws dropout masks from its own generator: none, to compare
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


def recipe_method(method) -> dict:
    recipe = validate_recipe({"model": "minilm", "data": {"train": "x.csv"}, "method": method})
    return recipe.model_dump(mode="json")["method"]


def test_compile_in_the_recipe_and_the_description():
    saved = recipe_method({"name": "lora", "r": 4, "compile": "regional"})
    assert saved["compile"] == "regional" and validate_recipe(
        {"model": "minilm", "data": {"train": "x.csv"}, "method": saved}).method.compile == "regional"
    assert "compile" not in recipe_method("full")  # the default is left out of the saved recipe
    spec = MethodSpec(name="full", gradient_checkpointing=True, compile="regional")
    assert spec.describe() == "full + gradient checkpointing + regional compile"
    with pytest.raises(RecipeError) as error:
        recipe_method({"name": "lora", "compile": "fast"})
    assert str(error.value) == "recipe: key 'method.compile': Input should be 'none' or 'regional' (got 'fast')"


def test_the_repeated_blocks_of_each_architecture(tiny_bert_dir, tiny_gpt2_dir, tiny_llama_dir):
    bert, _ = load_for_classification(tiny_bert_dir, num_labels=2, id2label={0: "a", 1: "b"}, label2id={"a": 0, "b": 1})
    found = {arch: [(name, type(blocks[0]).__name__, len(blocks)) for name, blocks in repeated_blocks(model)]
             for arch, model in (("llama", causal_lm(tiny_llama_dir)), ("gpt2", causal_lm(tiny_gpt2_dir)),
                                 ("bert", bert))}
    assert found == {"llama": [("model.layers", "LlamaDecoderLayer", 2)], "gpt2": [("transformer.h", "GPT2Block", 2)],
                     "bert": [("bert.encoder.layer", "BertLayer", 2)]}
    eager, _ = apply_method(causal_lm(tiny_llama_dir), MethodSpec(name="lora", r=4))
    model, applied = apply_method(causal_lm(tiny_llama_dir), MethodSpec(name="lora", r=4, compile="regional"))
    (_, blocks), = repeated_blocks(model)  # under PEFT: the wrapped model's blocks, the adapters inside them
    assert all(is_compiled(block) and any("lora_A" in name for name, _ in block.named_parameters())
               for block in blocks)
    assert list(model.state_dict()) == list(eager.state_dict())  # compiled in place: the same names
    assert applied.summary()["compiled_blocks"] == "2 x LlamaDecoderLayer (model.layers)"
    assert applied.summary()["compile"] == "regional" and "regional compile" in applied.describe()
    with pytest.raises(RecipeError, match="Linear has no list of repeated transformer blocks"):
        repeated_blocks(torch.nn.Linear(2, 2))


def one_step(model_dir, spec: MethodSpec):
    """(loss, gradients, names of the parameters an SGD step changed, graphs Dynamo compiled) of one batch."""
    model = causal_lm(model_dir)
    torch.manual_seed(0)  # the same LoRA A matrices
    model, _ = apply_method(model, spec)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    graphs = counters["stats"]["unique_graphs"]
    model.train()
    ids = torch.arange(2, 34).reshape(2, 16)
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5).step()
    compiled = counters["stats"]["unique_graphs"] - graphs
    model.eval()
    with torch.no_grad():  # evaluation runs eager: no graph compiled
        model(input_ids=ids)
    assert counters["stats"]["unique_graphs"] - graphs == compiled
    changed = {name for name, tensor in model.state_dict().items() if not torch.equal(tensor, before[name])}
    return loss.item(), grads, changed, compiled


@pytest.mark.parametrize("arch, spec", [
    ("llama", {"name": "lora", "r": 4, "dropout": 0.0}),
    ("gpt2", {"name": "full", "gradient_checkpointing": True}),
])
def test_a_compiled_step_has_the_loss_and_gradients_of_an_eager_one(arch, spec, request):
    model_dir = request.getfixturevalue(f"tiny_{arch}_dir")
    loss, grads, changed, graphs = one_step(model_dir, MethodSpec(**spec))
    assert graphs == 0
    loss_c, grads_c, changed_c, graphs_c = one_step(model_dir, MethodSpec(**spec, compile="regional"))
    assert graphs_c >= 1  # the blocks did run compiled
    assert loss_c == pytest.approx(loss, abs=TOLERANCE)
    assert grads_c.keys() == grads.keys()
    for name in grads:
        torch.testing.assert_close(grads_c[name], grads[name], atol=TOLERANCE, rtol=TOLERANCE)
    assert changed_c == changed
    if spec["name"] == "lora":  # the step moved the adapters' B matrices (A's gradient is 0 while B is 0) only
        assert changed_c and all("lora_B" in name for name in changed_c)


def safetensors_keys(path) -> set[str]:
    with safe_open(str(path), framework="pt") as handle:
        return set(handle.keys())


def run_cli(raw: dict, path, *extra: str) -> int:
    path.write_text(yaml.safe_dump(raw))
    return main(["train", str(path), *extra])


def test_a_compiled_run_trains_saves_and_resumes_as_an_eager_one_does(tiny_llama_dir, tmp_path, monkeypatch,
                                                                      capsys):
    text = shakespeare_slice(tmp_path / "shakespeare.txt", 3_000)
    raw = lm_recipe(tiny_llama_dir, "causal_lm", text, tmp_path / "eager", lm={"validation_by": "tail"},
                    epochs=1, lr=1e-2, max_length=32, max_steps=6, eval_every=6)
    raw["method"] = {"name": "lora", "r": 4}
    raw["report"] = {"html": False}
    raw["baselines"] = False
    assert run_cli(raw, tmp_path / "eager.yaml") == 0
    raw["method"]["compile"] = "regional"
    raw["output"] = str(tmp_path / "straight")
    capsys.readouterr()
    graphs = counters["stats"]["unique_graphs"]
    assert run_cli(raw, tmp_path / "straight.yaml") == 0
    assert counters["stats"]["unique_graphs"] > graphs  # the training steps ran compiled
    printed = capsys.readouterr()
    assert "compiling 2 x LlamaDecoderLayer (model.layers) at the first training step" in printed.out
    assert "recompile" not in printed.err + printed.out  # no Dynamo warning (recompile_limit)
    raw["output"] = str(tmp_path / "resumed")
    monkeypatch.setenv("TUNESMITH_TEST_SIGNAL_AFTER_STEP", "3:TERM")
    assert run_cli(raw, tmp_path / "resumed.yaml") == 143
    checkpoints = list((tmp_path / "resumed").glob("checkpoints/**/*.safetensors"))
    assert checkpoints and not any("_orig_mod" in key for path in checkpoints for key in safetensors_keys(path))
    monkeypatch.delenv("TUNESMITH_TEST_SIGNAL_AFTER_STEP")
    assert run_cli(raw, tmp_path / "resumed.yaml", "--resume") == 0
    capsys.readouterr()

    eager, straight, resumed = (tmp_path / name for name in ("eager", "straight", "resumed"))
    results = {run.name: json.loads((run / "eval.json").read_text()) for run in (eager, straight, resumed)}
    assert results["straight"]["method"]["compile"] == "regional" and results["eager"]["method"]["compile"] == "none"
    assert yaml.safe_load((straight / "recipe.yaml").read_text())["method"]["compile"] == "regional"
    for part in ("model/model.safetensors", "adapter/adapter_model.safetensors"):
        assert safetensors_keys(straight / part) == safetensors_keys(eager / part)
        assert not any("_orig_mod" in key for key in safetensors_keys(straight / part))
    assert results["straight"]["steps"] == results["resumed"]["steps"] == 6
    assert results["straight"]["validation"]["loss"] == results["resumed"]["validation"]["loss"]
    assert (straight / "adapter" / "adapter_model.safetensors").read_bytes() == \
        (resumed / "adapter" / "adapter_model.safetensors").read_bytes()
    # compiled and eager differ by float rounding (and LoRA dropout's masks) only
    assert results["straight"]["validation"]["loss"] == pytest.approx(results["eager"]["validation"]["loss"],
                                                                      rel=0.05)


def test_a_compiler_that_fails_is_one_line(tiny_llama_dir, tmp_path, monkeypatch, capsys):
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config

    monkeypatch.setattr(inductor_config.cpp, "cxx", (None, str(tmp_path / "no-such-g++")))
    monkeypatch.setattr(inductor_config, "fx_graph_cache", False)  # a cached kernel would need no compiler
    monkeypatch.setattr(functorch_config, "enable_autograd_cache", False)
    text = shakespeare_slice(tmp_path / "shakespeare.txt", 2_000)
    raw = lm_recipe(tiny_llama_dir, "causal_lm", text, tmp_path / "run", lm={"validation_by": "tail"},
                    epochs=1, max_length=32, max_steps=2)
    raw.update(method={"name": "full", "compile": "regional"}, report={"html": False}, baselines=False)
    capsys.readouterr()
    assert run_cli(raw, tmp_path / "run.yaml") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: method.compile: regional: torch.compile failed on LlamaDecoderLayer "
                              "(InductorError: InvalidCxxCompiler: No working C++ compiler found")
    assert err[-1].endswith("or set method.compile: none to train without compiling")
    assert not any("Traceback" in line for line in err)


def test_the_benchmark_reports_the_compile_cost_and_the_break_even():
    benchmarks = Path(__file__).resolve().parents[2] / "benchmarks"
    sys.path.insert(0, str(benchmarks))
    try:
        spec = importlib.util.spec_from_file_location("regional_compile_bench", benchmarks / "regional_compile.py")
        bench = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(bench)
    finally:
        sys.path.remove(str(benchmarks))
    eager = {"first_step_s": 3.0, "steady_step_s": 2.0, "wall_s": 100.0, "val_loss": 4.0}
    compiled = {"first_step_s": 33.0, "steady_step_s": 1.5, "wall_s": 125.0, "val_loss": 4.0}
    verdict = bench.versus_eager(compiled, eager, steps=10, few_minutes=5)
    assert verdict["compile_s"] == 30.0 and verdict["step_s_saved"] == 0.5
    assert verdict["break_even_steps"] == 60.0  # 30 s of compile / 0.5 s saved a step
    assert verdict["fixed_cost_s"] == 30.0 and verdict["break_even_wall_steps"] == 60.0
    assert verdict["pays_within_minutes"] == 2.0 and verdict["pays in a run of 5 minutes"] is True
    slower = bench.versus_eager({**compiled, "steady_step_s": 2.5}, eager, steps=10, few_minutes=5)
    assert slower["break_even_steps"] is None and slower["pays in a run of 5 minutes"] is False
