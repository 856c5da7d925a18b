"""Sampling with transformers `generate`, batched: for machines without vLLM (our GPU machine).

Colocated by sharing: the engine samples with the trainer's own model object, so `sync_weights` with
that model is free (nothing to copy); another model's weights are copied in. Prompts are left-padded
and all groups go through one `generate` call (`num_return_sequences=n`) in chunks of
`max_batch_sequences` sequences. Stop strings (`SamplingConfig.stop`, used by the step sampler) go
through `generate`'s `stop_strings`; as with vLLM, the stop string's tokens stay in `token_ids` and
its text is cut from `text`.

Departs from the issue's wish: this uses plain batched `generate` with a dynamic cache, not the
library's paged/continuous-batching generation (a follow-up; it matters for the H100 throughput target).
"""

from __future__ import annotations

from typing import Any, Sequence

from trainer.rollout import Completion, Group, SamplingConfig

__all__ = ["HFEngine"]


class HFEngine:
    def __init__(self, model: Any, tokenizer: Any, *, max_batch_sequences: int = 256):
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch_sequences = max_batch_sequences

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
        self.model.eval()
        generator_state = None
        if sampling.seed is not None:
            generator_state = torch.random.get_rng_state()
            torch.manual_seed(sampling.seed)
        try:
            for start in range(0, len(prompts), per_chunk):
                chunk = list(prompts[start:start + per_chunk])
                enc = tok(chunk, return_tensors="pt", padding=True, padding_side="left",
                          add_special_tokens=False).to(self.model.device)
                kwargs = dict(do_sample=not greedy, max_new_tokens=sampling.max_tokens, num_return_sequences=n,
                              output_scores=True, return_dict_in_generate=True, eos_token_id=eos,
                              pad_token_id=eos)  # finished rows are padded with EOS: cut at the first
                if sampling.stop:
                    kwargs.update(stop_strings=list(sampling.stop), tokenizer=tok)
                if not greedy:
                    # every knob explicit: a model's generation_config (Qwen's: top_k 20, top_p 0.8,
                    # repetition_penalty 1.05) must not change the distribution behind the log-probs
                    kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p,
                                  top_k=max(sampling.top_k, 0), repetition_penalty=1.0)
                with torch.no_grad():
                    out = self.model.generate(**enc, **kwargs)
                    # [len(chunk)*n, new_tokens]: log-softmax of the processed scores = sampling log-probs
                    logprobs = self.model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
                new = out.sequences[:, enc.input_ids.shape[1]:]  # [len(chunk)*n, new_tokens]
                for i, prompt in enumerate(chunk):
                    prompt_ids = tuple(enc.input_ids[i][enc.attention_mask[i].bool()].tolist())
                    completions = tuple(self._completion(new[i * n + j], logprobs[i * n + j], eos, sampling.stop)
                                        for j in range(n))
                    groups.append(Group(prompt=prompt, prompt_ids=prompt_ids, completions=completions))
        finally:
            if generator_state is not None:
                torch.random.set_rng_state(generator_state)
            self.model.train(was_training)
        return groups

    def _completion(self, ids: Any, logprobs: Any, eos: int, stop: Sequence[str]) -> Completion:
        ids = ids.tolist()
        stopped = eos in ids
        end = ids.index(eos) + 1 if stopped else len(ids)  # keep EOS: the policy learns to stop
        text = self.tokenizer.decode(ids[:end], skip_special_tokens=True)
        for s in stop:
            # a stop string ends the completion (its tokens kept, its text dropped, as vLLM does);
            # rows that stopped earlier than others were padded with EOS after it
            cut = text.find(s)
            if cut >= 0:
                k = self._tokens_covering(ids[:end], cut + len(s))
                ids, end, stopped, text = ids[:k], k, True, text[:cut]
                break
        return Completion(token_ids=tuple(ids[:end]), text=text, logprobs=tuple(logprobs[:end].tolist()),
                          finish_reason="stop" if stopped else "length")

    def _tokens_covering(self, ids: list[int], chars: int) -> int:
        """The fewest leading tokens of `ids` whose decoded text has >= `chars` characters."""
        for k in range(1, len(ids) + 1):
            if len(self.tokenizer.decode(ids[:k], skip_special_tokens=True)) >= chars:
                return k
        return len(ids)
