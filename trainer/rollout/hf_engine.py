"""Sampling with transformers `generate`, batched: for machines without vLLM (our GPU machine).

Colocated by sharing: the engine samples with the trainer's own model object, so `sync_weights` with
that model is free (nothing to copy); another model's weights are copied in. Prompts are left-padded
and all groups go through one `generate` call (n rows per prompt) in chunks of
`max_batch_sequences` sequences. Stop strings (`SamplingConfig.stop`, used by the step sampler) go
through `generate`'s `stop_strings`; as with vLLM, the stop string's tokens stay in `token_ids` and
its text is cut from `text`.

Sampling log-probs without `output_scores`: the warpers (temperature, top-k, top-p) are handed to
`generate` as our own processor list, ending in a processor that keeps the log-prob of each step's
token. Memory stays O(batch) per step instead of the O(steps x batch x vocab) of stored scores (20 GiB
for 128 rows x 256 steps of a 151,936-token vocabulary). `sampler` (rollout.hf_sampler) says which:
"library" (default): `generate` samples (softmax and multinomial) and `_LogprobRecorder` keeps one
step's log-softmax to gather the sampled token's log-prob at the next call; "fused":
`token_sampler.TokenSampler` draws the token itself (Gumbel-max, Triton kernels on CUDA) and `generate` runs
greedily over its marked scores. Both draw from the same distribution; the fused one makes fewer
passes over the vocabulary (1.04-1.32x the library's tokens/s on the H100, docs/benchmarks.md). The
engine's own default stays "library"; the trainer's config (rollout.hf_sampler) picks "fused".

`deferred_stop` (rollout.hf_deferred_stop, default on): on CUDA, `generate` reads "all rows finished?"
one step late, so the host queues the next step while the device runs this one (deferred_stop.py).

`cache`: "dynamic" (transformers' default cache), "static" (a preallocated cache, no compilation),
"static_compiled" (static cache plus the compiled decode step transformers runs for it; prompts are
left-padded to a multiple of 64 tokens so that few shapes compile), or "paged": transformers'
continuous batching (`generate_batch`: a paged KV cache, no padding, finished rows leave the batch at
once, the library's own sampling log-probs). Which is fastest depends on the model and batch;
bench/bench_grpo_gpu.py measures them on the H100 (docs/benchmarks.md).

`gqa_decode` (rollout.hf_gqa_decode): decode steps of a grouped-query model attend with its KV heads
as they are, instead of transformers' copies of them per query head (gqa_attention.py).

`merged` (rollout.hf_merged_projections): each layer's q/k/v projections run as one GEMM and its
gate/up projections as another, from a copy of their weights refreshed at every call
(merged_projections.py).

With a static cache, decode steps get their inputs (decode_inputs.py) and, with `gqa_decode`, their
attention masks (decode_mask.py) from leaner versions of the library's per-step functions: the same
tensors with fewer host operations (`lean_decode`, on; False in benchmarks gives the library's).
With "static_compiled" on CUDA, each `generate` call's decode steps are replayed from a CUDA graph of
the compiled step that it captures at its first decode step, instead of going through dynamo's guards
at every step (graphed_decode.py; `graphed_decode`, on; False gives transformers' compiled call).
With a static cache the engine keeps one cache per batch size across calls, reset in place, and the
decode graphs that use it, so a later call of the same shape replays them without a capture
(static_cache_reuse.py; `keep_decode_state`, on; the memory stays held between calls, ~0.25 GB of
cache for 128 rows of 320 tokens of the ~0.5B shape, ~2.8 GB for 256 rows of 768 of the 1.5B one).
A kept cache writes each decode step's keys and values in one kernel (kv_write.py), and a group's
prompt forward runs once, on one row, its keys and values copied to the group's other rows
(shared_prefill.py; `shared_prefill`, on).

"paged" details (paged_engine.py): the KV cache is sized for the call (blocks for every row's prompt
plus max_tokens), not from free memory; stop strings are not supported by the library's scheduler, so
a call with `stop` (the step sampler) runs through `generate` with the dynamic cache instead.
"""

from __future__ import annotations

import contextlib
from typing import Any, Sequence

from trainer.rollout import HF_CACHES, HF_SAMPLERS, Completion, Group, SamplingConfig
from trainer.rollout.decode_inputs import lean_decode_inputs
from trainer.rollout.deferred_stop import deferred_stop_checks
from trainer.rollout.gqa_attention import decode_attention
from trainer.rollout.graphed_decode import graphed_decode
from trainer.rollout.merged_projections import merged_projections
from trainer.rollout.static_cache_reuse import StaticCaches, reused_static_caches
from trainer.rollout.paged_engine import generate_paged
from trainer.rollout.shared_prefill import shared_prompt_prefill
from trainer.rollout.token_sampler import TokenSampler

__all__ = ["HFEngine", "decode_rows"]


def decode_rows(tokenizer: Any, rows: list[list[int]]) -> list[str]:
    """`tokenizer.batch_decode(rows, skip_special_tokens=True)`. For a fast tokenizer that does not clean
    up spaces, straight from its Rust tokenizer, as the library's `_decode` does row by row: the library
    first walks every id in Python to make sure it is a list (`to_py_obj`), 3-4 ms of host time for 64
    rows of 256 tokens on our CPU, twice the decoding itself."""
    from transformers.tokenization_utils_tokenizers import TokenizersBackend
    backend = getattr(tokenizer, "_tokenizer", None)
    if (isinstance(tokenizer, TokenizersBackend) and type(tokenizer)._decode is TokenizersBackend._decode
            and not tokenizer.clean_up_tokenization_spaces and hasattr(backend, "decode_batch")):
        return backend.decode_batch(rows, skip_special_tokens=True)
    return tokenizer.batch_decode(rows, skip_special_tokens=True)


class _LogprobRecorder:
    """The last logits processor: log-softmax of the processed scores, gathered at the sampled token."""

    def __init__(self) -> None:
        self.previous = None  # [rows, vocab] log-probs of the step before
        self.logprobs: list = []

    def __call__(self, input_ids, scores):
        import torch
        if self.previous is not None:
            self.logprobs.append(self.previous.gather(1, input_ids[:, -1:]).squeeze(1))
        self.previous = torch.log_softmax(scores, dim=-1)
        return scores

    def finish(self, new_tokens):
        """[rows, T] log-probs of the T generated tokens `new_tokens` (the sequences' new part). Calls for
        steps that `generate` ran ahead and then undid (its deferred stop check) are dropped."""
        import torch
        made = new_tokens.shape[1]
        if len(self.logprobs) < made and self.previous is not None:
            self.logprobs.append(self.previous.gather(1, new_tokens[:, len(self.logprobs):len(self.logprobs) + 1])
                                 .squeeze(1))
        self.previous = None
        if len(self.logprobs) < made:
            raise RuntimeError(f"recorded {len(self.logprobs)} sampling log-probs for {made} generated tokens")
        kept = self.logprobs[:made]
        return torch.stack(kept, dim=1) if kept else torch.zeros(new_tokens.shape[0], 0, device=new_tokens.device)


class HFEngine:
    def __init__(self, model: Any, tokenizer: Any, *, max_batch_sequences: int = 256, cache: str = "dynamic",
                 paged_options: dict | None = None, gqa_decode: bool = False, sampler: str = "library",
                 deferred_stop: bool = True, merged: bool = False, decode_kernel: str = "sdpa"):
        if cache not in HF_CACHES:
            raise ValueError(f"rollout.hf_cache must be one of {HF_CACHES}, got {cache!r}")
        if sampler not in HF_SAMPLERS:
            raise ValueError(f"rollout.hf_sampler must be one of {HF_SAMPLERS}, got {sampler!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch_sequences = max_batch_sequences
        self.cache = cache
        self.paged_options = dict(paged_options or {})  # more ContinuousBatchingConfig fields (benchmarks)
        self.gqa_decode = gqa_decode  # decode steps of grouped-query models without KV copies (gqa_attention.py)
        self.sampler = sampler
        self.deferred_stop = deferred_stop
        self.decode_kernel = decode_kernel  # gqa_decode's kernel: sdpa | split_kv (gqa_attention.py)
        self.merged = merged  # one GEMM for q/k/v and one for gate/up, from a copy (merged_projections.py)
        # static caches: decode-step masks (with gqa_decode) and inputs made with fewer host operations
        # (decode_mask.py, decode_inputs.py); False gives the library's own (benchmarks)
        self.lean_decode = True
        # static_compiled on CUDA: decode steps replayed from a CUDA graph per call (graphed_decode.py)
        self.graphed_decode = True
        self.decode_calls: list = []  # the last chunk's GraphedDecodeCalls (prompt forward, decode step)
        # static caches: one per batch size kept across calls (static_cache_reuse.py), and with them the
        # decode steps' CUDA graphs, replayed by later calls without a capture; False: both made per call
        self.keep_decode_state = True
        # with kept state on CUDA, a prompt forward of at most this many tokens (rows x padded prompt
        # length) also runs from a kept CUDA graph (the library's one-chunk prefill through the compiled
        # call); larger ones run eagerly, bound by the GPU rather than the host (0: never)
        self.graphed_prefill_tokens = 16384
        # with kept caches, a group's prompt forward runs on one row and is copied to the others
        # (shared_prefill.py); False: every row's own (benchmarks)
        self.shared_prefill = True
        # torch.compile's mode for the graphed steps, or a dict of inductor options: combo kernels (independent
        # small kernels of a step launched as one) gave 1-7% more tokens/s at 64-128 rows of the ~0.5B shape
        # on an H100 (docs/benchmarks.md, 2026-11-27); None: inductor's defaults
        self.decode_compile_mode: str | dict | None = {"combo_kernels": True}
        self.static_caches = StaticCaches()
        self._decode_graphs: dict = {}

    def sync_weights(self, model: Any) -> None:
        if model is not self.model:
            self.model.load_state_dict(model.state_dict())

    def sleep(self) -> None:
        """Nothing to release: the engine is the trainer's own model."""

    def generate(self, prompts: Sequence[str], n: int, sampling: SamplingConfig) -> list[Group]:
        import torch

        tok = self.tokenizer
        eos = tok.eos_token_id
        per_chunk = max(1, self.max_batch_sequences // n)
        greedy = sampling.temperature == 0
        groups: list[Group] = []
        was_training = self.model.training
        if was_training:  # each switch walks every module (~2-3 ms of host time for the ~0.5B shape)
            self.model.eval()
        generator_state = None
        if sampling.seed is not None:
            generator_state = torch.random.get_rng_state()
            torch.manual_seed(sampling.seed)
        try:
            if self.cache == "paged" and not sampling.stop:
                return generate_paged(self.model, tok, prompts, n, sampling, per_chunk, self.paged_options)
            for start in range(0, len(prompts), per_chunk):
                chunk = list(prompts[start:start + per_chunk])
                enc = tok(chunk, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False,
                          pad_to_multiple_of=64 if self.cache == "static_compiled" else None).to(self.model.device)
                out, logprobs = self._generate(enc, n, sampling, eos, greedy)
                # to the host in one copy each: a GPU row's .tolist() is a transfer and a wait of its own
                # (with them, a 64-row call's part after its last step took 12-18 ms on an H100 host, 8 ms
                # without, on the same host: 2026-11-27)
                new = out[:, enc.input_ids.shape[1]:].cpu().tolist()  # [len(chunk)*n][new_tokens]
                prompts_ids, masks = enc.input_ids.cpu().tolist(), enc.attention_mask.cpu().tolist()
                logprob_rows = logprobs.tolist()
                ends = [row.index(eos) + 1 if eos in row else len(row) for row in new]  # keep EOS: learnt
                texts = decode_rows(tok, [row[:end] for row, end in zip(new, ends)])
                for i, prompt in enumerate(chunk):
                    prompt_ids = tuple(t for t, keep in zip(prompts_ids[i], masks[i]) if keep)
                    rows = range(i * n, (i + 1) * n)
                    completions = tuple(self._completion(new[r], logprob_rows[r], ends[r], texts[r], sampling.stop)
                                        for r in rows)
                    groups.append(Group(prompt=prompt, prompt_ids=prompt_ids, completions=completions))
        finally:
            if generator_state is not None:
                torch.random.set_rng_state(generator_state)
            if was_training:
                self.model.train()
        return groups

    def _generate(self, enc: Any, n: int, sampling: SamplingConfig, eos: int, greedy: bool):
        """(sequences [rows, prompt + new], sampling log-probs [rows, new]) of one chunk."""
        import torch
        from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

        fused = self.sampler == "fused"
        group = n  # rows come in groups of n copies of a prompt (repeated here, or by `generate`)
        recorder = TokenSampler(greedy, kernel=self.model.device.type == "cuda") if fused else _LogprobRecorder()
        processors = LogitsProcessorList()
        if not greedy:
            # every knob explicit and applied by us, in vLLM's order (temperature, top-k, top-p): a model's
            # generation_config (Qwen's: top_k 20, top_p 0.8, repetition_penalty 1.05) must not change the
            # distribution behind the log-probs
            if sampling.temperature != 1.0:
                processors.append(TemperatureLogitsWarper(sampling.temperature))
            if sampling.top_k > 0:
                processors.append(TopKLogitsWarper(sampling.top_k))
            if sampling.top_p < 1.0:
                processors.append(TopPLogitsWarper(sampling.top_p))
        processors.append(recorder)
        if (fused or greedy) and n > 1:  # a greedy `generate` takes one sequence per input (it refuses
            # num_return_sequences > 1): the rows are repeated here, as `generate` itself would for
            # num_return_sequences (a prompt's n rows next to each other)
            enc = {k: v.repeat_interleave(n, dim=0) for k, v in enc.items()}
            n = 1
        kwargs = dict(do_sample=not greedy and not fused, max_new_tokens=sampling.max_tokens, num_return_sequences=n,
                      eos_token_id=eos, pad_token_id=eos,  # finished rows are padded with EOS: cut at the first
                      # top_k 0 (off) when `generate` samples; else its default, which it ignores (0 would warn)
                      temperature=1.0, top_k=0 if not greedy and not fused else 50, top_p=1.0, min_p=None,
                      typical_p=1.0, repetition_penalty=1.0,
                      logits_processor=processors,
                      # no rank waits for another: transformers turns this on for an FSDP model under
                      # torch.distributed (an all-reduce every step, and every rank decoding until all are
                      # done), but the engine samples with whole, gathered parameters (distributed.gathered),
                      # and ranks make different numbers of calls (the step sampler)
                      synced_gpus=False)
        if self.cache in ("static", "static_compiled"):
            kwargs.update(cache_implementation="static", disable_compile=self.cache != "static_compiled")
        graphed = self.graphed_decode and self.cache == "static_compiled"
        keep = self.keep_decode_state and self.cache in ("static", "static_compiled")
        rows, prompt_length = enc["input_ids"].shape[0] * n, enc["input_ids"].shape[1]
        if graphed and keep and self.model.device.type == "cuda" and rows * prompt_length <= self.graphed_prefill_tokens:
            # one chunk: `generate` then runs the prompt's forward through `get_compiled_call` too
            # (graphed_decode.py keys its graph by the prompt's shape: one per prompt length and batch)
            kwargs.update(prefill_chunk_size=prompt_length)
        if sampling.stop:
            kwargs.update(stop_strings=list(sampling.stop), tokenizer=self.tokenizer)
        attention = (decode_attention(self.model, self.decode_kernel, self.lean_decode) if self.gqa_decode
                     else contextlib.nullcontext())
        lean = self.lean_decode and self.cache in ("static", "static_compiled")
        if not keep:
            self.static_caches.clear()
            self._decode_graphs.clear()
        with (torch.inference_mode(), attention, deferred_stop_checks(self.deferred_stop),
              merged_projections(self.model, self.merged), lean_decode_inputs(self.model, lean),
              reused_static_caches(self.model, self.static_caches if keep else None),
              shared_prompt_prefill(self.model, group if self.shared_prefill else 1,
                                    self.static_caches if keep else None),
              graphed_decode(self.model, graphed, self._decode_graphs if keep else None,
                             keep_if=lambda graph: self.static_caches.holds(graph.cache),
                             mode=self.decode_compile_mode) as self.decode_calls):
            sequences = self.model.generate(**enc, **kwargs)
            logprobs = recorder.finish(sequences[:, enc["input_ids"].shape[1]:])
        return sequences, logprobs.float().cpu()

    def _completion(self, ids: list[int], logprobs: list[float], end: int, text: str,
                    stop: Sequence[str]) -> Completion:
        """A row's completion: `ids` up to `end` (its first EOS included, or all), `text` their decoding."""
        stopped = end > 0 and ids[end - 1] == self.tokenizer.eos_token_id
        for s in stop:
            # a stop string ends the completion (its tokens kept, its text dropped, as vLLM does);
            # rows that stopped earlier than others were padded with EOS after it
            cut = text.find(s)
            if cut >= 0:
                k = self._tokens_covering(ids[:end], cut + len(s))
                ids, end, stopped, text = ids[:k], k, True, text[:cut]
                break
        return Completion(token_ids=tuple(ids[:end]), text=text, logprobs=tuple(logprobs[:end]),
                          finish_reason="stop" if stopped else "length")

    def _tokens_covering(self, ids: list[int], chars: int) -> int:
        """The fewest leading tokens of `ids` whose decoded text has >= `chars` characters."""
        for k in range(1, len(ids) + 1):
            if len(self.tokenizer.decode(ids[:k], skip_special_tokens=True)) >= chars:
                return k
        return len(ids)
