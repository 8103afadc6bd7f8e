"""Build the tiny Llama the real CPU vLLM pool serves.

No model can be downloaded on the machines this project targets, so the
default fleet's real pool serves a model built locally on first use: a
2-layer Llama (hidden 128, head_dim 64, which vLLM's CPU attention accepts)
with random weights, a byte-level BPE tokenizer trained on generated text,
and a Llama-3-style chat template. The text it writes is gibberish; its
speed and memory behaviour are those of a real vLLM engine.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path

MODEL_DIR_ENV = "HETSERVE_TINY_MODEL_DIR"
VOCAB_SIZE = 2048
MAX_POSITION = 4096

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{{ message['content'] }}<|eot_id|>"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
SPECIAL_TOKENS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]

_WORDS = (
    "the a of to and in is for on with as by at from that this it be are was were "
    "model token energy power joule watt batch sequence latency prompt output request pool "
    "gpu npu cpu memory bandwidth compute cache kernel router gateway stream serve "
    "fast slow small large efficient cost price time second minute hour day "
    "hello world question answer user assistant system please thanks yes no"
).split()


def default_model_dir() -> Path:
    """Where the tiny model lives: ``$HETSERVE_TINY_MODEL_DIR`` or the user cache."""
    if env := os.environ.get(MODEL_DIR_ENV):
        return Path(env)
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "hetserve" / "models" / "tiny-llama"


def _corpus(lines: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(lines):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 24))]
        if rng.random() < 0.3:
            words.append(str(rng.randint(0, 10_000)))
        out.append(" ".join(words) + rng.choice([".", "?", "!", ","]))
    return out


def _train_tokenizer(model_dir: Path, seed: int) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(20_000, seed), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        pad_token="<|end_of_text|>",
        model_max_length=MAX_POSITION,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(model_dir)


def _write_model(model_dir: Path, seed: int) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast.from_pretrained(model_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=384,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=64,
        max_position_embeddings=MAX_POSITION,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        torch_dtype="bfloat16",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(model_dir, safe_serialization=True)
    (model_dir / "generation_config.json").write_text(
        json.dumps({"bos_token_id": config.bos_token_id, "eos_token_id": config.eos_token_id})
    )


def ensure_tiny_model(model_dir: Path | None = None, seed: int = 0) -> Path:
    """Build the tiny model in ``model_dir`` unless it is already complete there."""
    model_dir = Path(model_dir) if model_dir else default_model_dir()
    if (model_dir / ".complete").exists():
        return model_dir
    # Several processes (gateway, pool replicas) may ask at once: each builds in
    # a private directory and the first rename wins.
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=model_dir.parent, prefix=".building-") as tmp:
        staging = Path(tmp) / "model"
        staging.mkdir()
        _train_tokenizer(staging, seed)
        _write_model(staging, seed)
        (staging / ".complete").write_text("ok\n")
        try:
            os.rename(staging, model_dir)
        except OSError:
            if not (model_dir / ".complete").exists():
                raise
    return model_dir


if __name__ == "__main__":
    print(ensure_tiny_model())
