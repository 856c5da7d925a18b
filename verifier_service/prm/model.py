"""The PRM forward pass (torch side): load a model directory, score tag positions of padded batches.

Imported only where the model runs (the PRM process, or an offline PRMScorer), never by the
server process. Every forward runs under `torch.inference_mode()`; on a GPU the weights are
bf16, on a CPU fp32. P(correct) is computed in fp32 from the head's outputs.

Three kinds (tasks/prm_format.py). Two read one vector at each tag, a pair of named functions each,
picked once at load:
  token_classification  full model -> logits [B, T, L] -> gather tags -> softmax[correct_label]
                        (L == 2) or sigmoid (L == 1)
  causal_lm             base model -> hidden [B, T, H] -> gather tags -> hidden @ W[[good, bad]]^T
                        -> softmax[0]. Only the two label rows of the LM head are applied: the full
                        vocabulary projection (151,936 columns for Qwen) would dominate the cost.
                        Assumes a plain linear LM head (Qwen2, Llama, Mistral; not logit soft-capping).
The third, step_likelihood, is `StepLikelihoodModel` (`PRMModel.load` picks it):
  step_likelihood       base model -> hidden [B, T, H] -> the LM head applied only at the tokens before
                        each step's own tokens and tag -> their NLLs -> likelihood_features [N, 6] ->
                        sigmoid(w . f + b). The problem text never reaches the LM head.

Rows are right-padded: a real token never attends to padding (causal attention alone sees to that,
so `score_rows` passes no mask), and position ids stay 0..len-1, so a padded row scores as it would
alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from tasks.prm_format import PRMFormat, label_token_ids, likelihood_features, load_head

from .text import load_tokenizer

__all__ = ["PRMModel", "StepLikelihoodModel"]

Spans = Sequence[tuple[int, int, int]]  # render_spans: (start, tag_start, tag) per step


@dataclass(frozen=True)
class _Head:
    module: Callable[[Any], Any]   # the loaded model -> the module that runs (the full model, or its base)
    features: Callable[..., Any]   # (module, **inputs) -> [B, T, F]
    probs: Callable[[Any], Any]    # [N, F] gathered at tags -> [N] P(correct), fp32


class PRMModel:
    """A loaded PRM; `score_rows` and `score_candidates` return P(correct) at the tag positions."""

    def __init__(self, model: Any, fmt: PRMFormat, device: str, head: _Head, compile: bool = False) -> None:
        self.model = model
        self.fmt = fmt
        self.device = device
        self._head = head
        # `compile`: score_rows runs a torch.compile'd module (dynamic shapes: one graph for every batch
        # shape; fused norms and activations). The prefix-cache path of score_candidates stays eager.
        self._rows_module = head.module(model)
        self._rows_kwargs = causal_rows_kwargs(model.config)
        if compile:
            import torch
            self._rows_module = torch.compile(self._rows_module, dynamic=True)

    @classmethod
    def load(cls, directory: str, fmt: PRMFormat, device: str = "auto", compile: bool = False) -> PRMModel:
        import torch
        from transformers import AutoModelForCausalLM, AutoModelForTokenClassification

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        if fmt.kind == "step_likelihood":
            lm = AutoModelForCausalLM.from_pretrained(directory, dtype=dtype).to(device)
            return StepLikelihoodModel(lm, fmt, device, load_head(directory), compile)
        auto = AutoModelForCausalLM if fmt.kind == "causal_lm" else AutoModelForTokenClassification
        model = auto.from_pretrained(directory, dtype=dtype).to(device)
        labels = label_token_ids(load_tokenizer(directory), fmt) if fmt.kind == "causal_lm" else None
        return cls.wrap(model, fmt, device, labels, compile)

    @classmethod
    def wrap(cls, model: Any, fmt: PRMFormat, device: str, labels: tuple[int, int] | None = None,
             compile: bool = False) -> PRMModel:
        """A PRMModel around a model already in memory on `device` (the benchmark builds one);
        `labels` are the (good, bad) token ids of a causal_lm PRM."""
        model.eval()
        if fmt.kind == "causal_lm":
            if labels is None:
                raise ValueError("a causal_lm PRM needs its (good, bad) label token ids")
            return cls(model, fmt, device, _causal_lm_head(model, *labels), compile)
        return cls(model, fmt, device, _token_classification_head(model.config.num_labels, fmt.correct_label),
                   compile)

    def describe(self) -> dict[str, Any]:
        params = sum(p.numel() for p in self.model.parameters())
        return {"device": self.device, "dtype": str(next(self.model.parameters()).dtype).removeprefix("torch."),
                "params": params, "architecture": type(self.model).__name__}

    def score_rows(self, rows: Sequence[Sequence[int]], positions: Sequence[Sequence[int]],
                   spans: Sequence[Spans] | None = None) -> list[list[float]]:
        """One forward pass over `rows` (right-padded); P(correct) at each row's positions. `spans` (each
        row's render_spans) is read by a step_likelihood PRM only."""
        import torch

        with torch.inference_mode():
            ids, _ = self._pad(rows)                                       # [B, T]
            # no mask: with right padding, causal attention alone keeps padding out of every real token,
            # and a mask-free batch takes SDPA's fused causal kernels (a padding mask forces the slower
            # masked path: 2x the throughput on the H100, docs/benchmarks.md)
            x = self._head.features(self._rows_module, input_ids=ids, **self._rows_kwargs)  # [B, T, F]
            return self._gather(x, positions)

    def score_candidates(self, prefix: Sequence[int], suffixes: Sequence[Sequence[int]], positions: Sequence[int],
                         spans: Sequence[tuple[int, int, int]] | None = None,
                         prefix_spans: Spans | None = None) -> list[float]:
        """K candidate continuations of one prefix: the prefix runs once, its KV cache is repeated
        K times, and the K suffixes (right-padded) attend to it. Scores at each suffix's position.
        `spans` (the candidate step's span in each suffix) and `prefix_spans` (the prefix steps') are
        read by a step_likelihood PRM only."""
        import torch
        from transformers import DynamicCache

        with torch.inference_mode():
            k, p = len(suffixes), len(prefix)
            cache = DynamicCache(config=self.model.config)
            prefix_ids = torch.tensor([list(prefix)], dtype=torch.long, device=self.device)   # [1, P]
            self.model.base_model(input_ids=prefix_ids, past_key_values=cache, use_cache=True)
            cache.batch_repeat_interleave(k)                                # every layer's K/V: [K, heads, P, d]
            ids, suffix_mask = self._pad(suffixes)                          # [K, S]
            mask = torch.cat([torch.ones(k, p, dtype=torch.long, device=self.device), suffix_mask], dim=1)  # [K, P+S]
            position_ids = torch.arange(p, p + ids.shape[1], device=self.device).expand(k, -1)      # [K, S]
            x = self._head.features(self._head.module(self.model), input_ids=ids, attention_mask=mask,
                                    position_ids=position_ids,
                                    past_key_values=cache, use_cache=True)  # [K, S, F]
            return [row[0] for row in self._gather(x, [[pos] for pos in positions])]

    def _pad(self, rows: Sequence[Sequence[int]]) -> tuple[Any, Any]:
        import torch

        width = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), width, dtype=torch.long)     # pad id 0: masked, and after every real token
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, :len(row)] = torch.tensor(list(row), dtype=torch.long)
            mask[i, :len(row)] = 1
        return ids.to(self.device), mask.to(self.device)

    def _gather(self, x: Any, positions: Sequence[Sequence[int]]) -> list[list[float]]:
        import torch

        rows = torch.tensor([i for i, pos in enumerate(positions) for _ in pos], dtype=torch.long, device=x.device)
        cols = torch.tensor([p for pos in positions for p in pos], dtype=torch.long, device=x.device)
        flat = self._head.probs(x[rows, cols]).tolist()                   # [N]
        out, start = [], 0
        for pos in positions:
            out.append(flat[start:start + len(pos)])
            start += len(pos)
        return out


def causal_rows_kwargs(config: Any) -> dict[str, Any]:
    """Keyword arguments of a mask-free causal pass over right-padded rows (score_rows).

    A model whose layers are all full attention and that takes a precomputed mask per layer type (Qwen2,
    Qwen3, Mistral and most decoders of transformers 5) gets {"full_attention": None}: no mask is built and
    SDPA runs with is_causal. Without it, a torch.compile'd forward (torch < 2.14) materialises a [B, 1, T, T]
    causal mask and runs the masked kernel over all of it: 40% of the compiled 0.5B PRM's GPU time
    (docs/benchmarks.md). Eager passes already skip the mask; other models get {} and work as before."""
    layer_types = getattr(config, "layer_types", None)
    if layer_types and all(t == "full_attention" for t in layer_types):
        return {"attention_mask": {"full_attention": None}}
    return {}


def _token_classification_head(num_labels: int, correct_label: int) -> _Head:
    import torch

    def features(module: Any, **inputs: Any) -> Any:
        return module(**inputs).logits                                      # [B, T, L]

    def whole(model: Any) -> Any:
        return model

    if num_labels == 1:
        return _Head(whole, features, lambda logits: torch.sigmoid(logits.float()[:, 0]))
    if num_labels == 2:
        return _Head(whole, features, lambda logits: torch.softmax(logits.float(), dim=-1)[:, correct_label])
    raise ValueError(f"a token_classification PRM must have 1 or 2 labels, this one has {num_labels}")


def _causal_lm_head(model: Any, good: int, bad: int) -> _Head:
    import torch

    lm_head = model.get_output_embeddings()
    weight = lm_head.weight[[good, bad]].float()                           # [2, H]
    bias = None if lm_head.bias is None else lm_head.bias[[good, bad]].float()

    def base(model: Any) -> Any:
        return model.base_model

    def features(module: Any, **inputs: Any) -> Any:
        return module(**inputs).last_hidden_state                          # [B, T, H]

    def probs(hidden: Any) -> Any:
        logits = hidden.float() @ weight.T                                 # [N, 2]
        if bias is not None:
            logits = logits + bias
        return torch.softmax(logits, dim=-1)[:, 0]

    return _Head(base, features, probs)


class StepLikelihoodModel(PRMModel):
    """A step_likelihood PRM: a causal LM and its head (weight [6], bias) over likelihood_features."""

    def __init__(self, model: Any, fmt: PRMFormat, device: str, head: tuple[Sequence[float], float],
                 compile: bool = False) -> None:
        import torch

        def base(model: Any) -> Any:
            return model.base_model

        super().__init__(model, fmt, device, _Head(base, _last_hidden, lambda x: x), compile)
        model.eval()
        self._lm_head = model.get_output_embeddings()
        self._weight = torch.tensor(head[0], dtype=torch.float32, device=device)   # [6]
        self._bias = float(head[1])

    def score_rows(self, rows: Sequence[Sequence[int]], positions: Sequence[Sequence[int]],
                   spans: Sequence[Spans] | None = None) -> list[list[float]]:
        import torch

        if spans is None:
            raise ValueError("a step_likelihood PRM needs the step spans of every row")
        with torch.inference_mode():
            ids, _ = self._pad(rows)                                                   # [B, T]
            hidden = self._rows_module(input_ids=ids, **self._rows_kwargs).last_hidden_state  # [B, T, H]
            before = torch.nn.functional.pad(hidden[:, :-1], (0, 0, 1, 0))            # [B, T, H]: the token before
            probs = self._probs(self._token_nll(before, ids, spans, first=1), spans)  # [N]
            out, start = [], 0
            for row in spans:
                out.append(probs[start:start + len(row)])
                start += len(row)
            return out

    def score_candidates(self, prefix: Sequence[int], suffixes: Sequence[Sequence[int]], positions: Sequence[int],
                         spans: Sequence[tuple[int, int, int]] | None = None,
                         prefix_spans: Spans | None = None) -> list[float]:
        """The prefix runs once (its KV cache repeated K times). The first suffix token's NLL comes from
        the prefix's last hidden state; the features of the candidate step take their running maxima over
        the prefix steps too, so each score equals score_rows of the whole chain."""
        import torch
        from transformers import DynamicCache

        if spans is None or prefix_spans is None:
            raise ValueError("a step_likelihood PRM needs the spans of the prefix steps and of each candidate")
        with torch.inference_mode():
            k, p = len(suffixes), len(prefix)
            cache = DynamicCache(config=self.model.config)
            prefix_ids = torch.tensor([list(prefix)], dtype=torch.long, device=self.device)          # [1, P]
            hidden_p = self.model.base_model(input_ids=prefix_ids, past_key_values=cache,
                                             use_cache=True).last_hidden_state                      # [1, P, H]
            cache.batch_repeat_interleave(k)
            ids, suffix_mask = self._pad(suffixes)                                                  # [K, S]
            mask = torch.cat([torch.ones(k, p, dtype=torch.long, device=self.device), suffix_mask], dim=1)
            position_ids = torch.arange(p, p + ids.shape[1], device=self.device).expand(k, -1)      # [K, S]
            hidden_s = self.model.base_model(input_ids=ids, attention_mask=mask, position_ids=position_ids,
                                             past_key_values=cache, use_cache=True).last_hidden_state  # [K, S, H]
            before_p = torch.nn.functional.pad(hidden_p[:, :-1], (0, 0, 1, 0))                     # [1, P, H]
            before_s = torch.cat([hidden_p[:, -1:].expand(k, -1, -1), hidden_s[:, :-1]], dim=1)     # [K, S, H]
            nll_p = self._token_nll(before_p, prefix_ids, [prefix_spans], first=1)                 # [1, P]
            nll_s = self._token_nll(before_s, ids, [[span] for span in spans], first=0)            # [K, S]
            nll = torch.cat([nll_p.expand(k, -1), nll_s], dim=1)                                   # [K, P+S]
            chains = [list(prefix_spans) + [(a + p, b + p, c + p)] for a, b, c in spans]
            probs = self._probs(nll, chains)                                                        # [sum of steps]
            ends = [sum(len(c) for c in chains[:i + 1]) - 1 for i in range(k)]
            return [probs[e] for e in ends]

    def _token_nll(self, before: Any, ids: Any, spans: Sequence[Spans], first: int) -> Any:
        """[B, T] NLLs of the tokens inside the spans (0 elsewhere); `before[b, t]` is the hidden state that
        predicts ids[b, t]; tokens before column `first` have none. The LM head runs only on these rows."""
        import torch

        rows, cols = [], []
        for b, row in enumerate(spans):
            for start, _, tag in row:
                for t in range(max(start, first), tag + 1):
                    rows.append(b)
                    cols.append(t)
        r = torch.tensor(rows, dtype=torch.long, device=self.device)
        c = torch.tensor(cols, dtype=torch.long, device=self.device)
        logp = self._lm_head(before[r, c]).float().log_softmax(-1)                  # [M, V]
        nll = torch.zeros(ids.shape, dtype=torch.float32, device=self.device)       # [B, T]
        nll[r, c] = -logp.gather(-1, ids[r, c][:, None])[:, 0]
        return nll

    def _probs(self, token_nll: Any, spans: Sequence[Spans]) -> list[float]:
        import torch

        features = likelihood_features(token_nll, spans)                            # [N, 6]
        return torch.sigmoid(features @ self._weight + self._bias).tolist()


def _last_hidden(module: Any, **inputs: Any) -> Any:
    return module(**inputs).last_hidden_state                                       # [B, T, H]
