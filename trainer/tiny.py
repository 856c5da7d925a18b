"""A tiny Qwen2-architecture model and a character-level tokenizer, built locally (no downloads).

Why: tests, the demo and CPU benchmarks need a real causal LM that vLLM and transformers both load,
without a model hub. The model is random (deterministic by seed); the tokenizer maps printable ASCII
and newline one character to one token, so token positions and text positions coincide (the step
boundaries of process supervision are exact).

    build_tiny(path, seed=0)  ->  path holding config.json, model.safetensors, tokenizer files

The tokenizer is a byte-level BPE without merges over the printable ASCII characters and newline (one
token per character), saved as a transformers fast tokenizer with a Qwen-style chat template. Why
byte-level: transformers 5 loads any tokenizer of a `qwen2` model directory as `Qwen2Tokenizer`
(AutoTokenizer ignores the saved class for that model type), which imposes Qwen's byte-level
pre-tokenizer and decoder; a plain character vocabulary then silently loses every space and newline
(" " is looked up as "Ġ"). With the vocabulary in byte-level form (" " stored as "Ġ", "\n" as "Ċ"), the
tokenizer built here and the one AutoTokenizer (and vLLM) reload give the same ids. Characters outside
the vocabulary become <unk> here and are dropped by the reloaded tokenizer: keep text to printable ASCII.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TinyConfig", "SPECIAL_TOKENS", "CHAT_TEMPLATE", "build_tokenizer", "build_tiny"]

EOS, PAD, UNK, IM_START, IM_END = "<|endoftext|>", "<|pad|>", "<unk>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = (EOS, PAD, UNK, IM_START, IM_END)
CHARACTERS = "\n" + "".join(c for c in string.printable if c.isprintable())  # printable ASCII + newline


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map, which byte-level tokenizers (Qwen's) use."""
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = [b for b in range(256) if b not in kept]
    return {**{b: chr(b) for b in kept}, **{b: chr(256 + i) for i, b in enumerate(shifted)}}


_BYTE_LEVEL = _bytes_to_unicode()

# Qwen's template, reduced: the turn end is EOS so that a completion ends with the model's stop token.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|endoftext|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass(frozen=True)
class TinyConfig:
    """Shape of the tiny model; the defaults are ~0.4M parameters (2 layers, hidden 128)."""

    hidden_size: int = 128
    intermediate_size: int = 256
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 512
    tie_word_embeddings: bool = False


def build_tokenizer():
    """The character-level fast tokenizer (a transformers PreTrainedTokenizerFast)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in CHARACTERS:  # the same ids as a plain character vocabulary, in byte-level form
        vocab[_BYTE_LEVEL[ord(ch)]] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD, unk_token=UNK,
                                   bos_token=None, chat_template=CHAT_TEMPLATE, padding_side="left")


def build_tiny(path: str | Path, *, seed: int = 0, config: TinyConfig = TinyConfig()) -> Path:
    """Write the tiny model and its tokenizer to `path` (created); the same seed gives the same weights."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    tokenizer.save_pretrained(path)
    eos = tokenizer.convert_tokens_to_ids(EOS)
    model_config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers, num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads, max_position_embeddings=config.max_position_embeddings,
        tie_word_embeddings=config.tie_word_embeddings, bos_token_id=eos, eos_token_id=eos,
        pad_token_id=tokenizer.pad_token_id, torch_dtype="float32")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(model_config)
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=tokenizer.pad_token_id,
                                               bos_token_id=eos)
    model.save_pretrained(path, safe_serialization=True)
    return path
