"""A miniature verifiable task for the CPU demo and the end-to-end tests — everything built locally.

Task: ``"a+b="`` for single digits; the answer must end with ``#### <a+b>``, graded by verl's own
``openai/gsm8k`` reward (``verl.utils.reward_score.gsm8k.compute_score``, strict format). The tokenizer is
character-level (``tokenizers`` WordLevel, with a chat template), the model a Qwen2 of ~100k parameters, given a
short supervised warm start on partly wrong answers so that the policy starts with a non-trivial pass rate.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch

DATA_SOURCE = "openai/gsm8k"  # routes verl's default_compute_score to its gsm8k grader
# ChatML, as verl's agent loop expects of a Qwen2 model (it checks for <|im_end|> and a one-token newline)
SPECIALS = ["<pad>", "<|im_end|>", "<|im_start|>"]
CHARS = list("0123456789+=# \nabcdefghijklmnopqrstuvwxyz")
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def problems(seed: int, n: int) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    return [(rng.randint(0, 9), rng.randint(0, 9)) for _ in range(n)]


def build_tokenizer(path: Path):
    """A character-level byte-level-BPE tokenizer (no merges) saved to ``path``.

    transformers loads a ``qwen2`` model's tokenizer as ``Qwen2Tokenizer``, which imposes Qwen's byte-level
    pre-tokenisation; a BPE with an empty merge list over the byte-level symbols of our characters is exactly
    character-level under it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_symbol = pre_tokenizers.ByteLevel.alphabet()  # ensure the byte-level table is available
    del byte_symbol
    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    for char in CHARS:
        vocab.setdefault(_byte_level(char), len(vocab))
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=None))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", eos_token="<|im_end|>", additional_special_tokens=["<|im_start|>"]
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(path)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def _byte_level(char: str) -> str:
    """GPT-2's byte-to-unicode mapping of a one-byte character (e.g. newline -> 'Ċ', space -> 'Ġ')."""
    code = ord(char)
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    if code in printable:
        return char
    shift = sorted(set(range(256)) - set(printable)).index(code)
    return chr(256 + shift)


def build_model(path: Path, tokenizer, seed: int = 0, hidden: int = 64, layers: int = 2, heads: int = 4,
                kv_heads: int = 2):
    """A tiny Qwen2 (``hidden`` wide, ``layers`` deep, head size ``hidden / heads``)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=128, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        torch_dtype="float32",
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def warm_start(model, tokenizer, seed: int, steps: int, accuracy: float, log=print) -> None:
    """Supervised pass on ``a+b=`` -> ``#### c``, where ``c`` is right with probability ``accuracy``."""
    rng = random.Random(seed)
    torch.manual_seed(seed)

    def batch():
        texts = []
        for a, b in problems(rng.randint(0, 10**9), 64):
            answer = a + b if rng.random() < accuracy else rng.randint(0, 18)
            messages = [{"role": "user", "content": f"{a}+{b}="}, {"role": "assistant", "content": f"#### {answer}"}]
            texts.append(tokenizer.apply_chat_template(messages, tokenize=False))
        encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        return encoded, encoded["input_ids"].masked_fill(encoded["attention_mask"] == 0, -100)

    supervised_pass(model, batch, steps, lr=3e-3, log_every=50, log=log)


def supervised_pass(model, batch, steps: int, lr: float, log_every: int, log=print) -> None:
    """``steps`` AdamW steps of the causal-LM loss on ``batch() -> (encoded inputs, labels)``; leaves the model in
    eval mode."""
    optim = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for step in range(steps):
        encoded, labels = batch()
        loss = model(**encoded, labels=labels).loss
        loss.backward()
        optim.step()
        optim.zero_grad()
        if step % log_every == 0 or step == steps - 1:
            log(f"warm start {step:4d}/{steps}: loss {loss.item():.3f}")
    model.eval()


def write_parquet(path: Path, split: str, seed: int, n: int) -> None:
    write_sums(path, split, problems(seed, n))


def write_sums(path: Path, split: str, pairs: list[tuple[int, int]], extra_info=None) -> None:
    """verl's RL parquet for the prompts ``a+b=`` (answer ``a + b``, graded by verl's gsm8k reward);
    ``extra_info(a, b)`` adds fields to each row's ``extra_info``."""
    import pandas as pd

    rows = []
    for i, (a, b) in enumerate(pairs):
        rows.append({
            "data_source": DATA_SOURCE,
            "prompt": [{"role": "user", "content": f"{a}+{b}="}],
            "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": str(a + b)},
            "extra_info": {"split": split, "index": i, **(extra_info(a, b) if extra_info else {})},
        })
    pd.DataFrame(rows).to_parquet(path)


def build_task(out_dir: Path, seed: int = 0, warm_steps: int = 600, accuracy: float = 0.6,
               n_train: int = 512, n_val: int = 64, log=print) -> dict[str, str]:
    """Build (or reuse) tokenizer + warm-started model + train/val parquet under ``out_dir``."""
    out_dir = Path(out_dir)
    model_dir, marker = out_dir / "model", out_dir / "task.json"
    spec = {"seed": seed, "warm_steps": warm_steps, "accuracy": accuracy, "n_train": n_train, "n_val": n_val, "heads": 2}
    paths = {"model": str(model_dir), "train": str(out_dir / "train.parquet"), "val": str(out_dir / "val.parquet")}
    if marker.exists() and json.loads(marker.read_text()) == spec:
        return paths
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(model_dir)
    # head size 32: vLLM's CPU attention supports 32, 64, 80, ... (not 16); as many parameters as 4 heads of 16
    model = build_model(model_dir, tokenizer, seed, heads=2, kv_heads=1)
    warm_start(model, tokenizer, seed, warm_steps, accuracy, log)
    model.save_pretrained(model_dir)
    write_parquet(Path(paths["train"]), "train", seed + 1, n_train)
    write_parquet(Path(paths["val"]), "test", seed + 2, n_val)
    marker.write_text(json.dumps(spec))
    return paths
