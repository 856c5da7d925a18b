"""Reward model: a scalar head on the policy's backbone, trained with the Bradley-Terry loss on pairs.

    verirl train rm --config configs/rm_demo.yaml [key=value ...]

Model: the policy's directory (an SFT result, or the tiny model) loaded as a token-classification model
with one label: transformers' `<Arch>ForTokenClassification` keeps the backbone's weights and adds a
linear head `score` [hidden -> 1] (the LM head is dropped). Head dropout is off (`classifier_dropout=0`):
a noisy reward gains nothing here and would make served scores differ from trained ones.

Input: the shared PRM format (tasks/prm_format.py) with the response as the one step:
    ids = tok(prompt) + tok(step_separator + response) + tok(step_tag)
and the reward r is the head's output at the tag's last token (the sequence's last token). The default
tag is the tokenizer's EOS token: one token in any tokenizer, and where a policy's response ends anyway.

Loss: Bradley-Terry, -log sigmoid(r_chosen - r_rejected), summed over the batch's pairs and divided by
the batch's pair count (gradient accumulation gives the same gradient). Every `eval.every` steps: the
held-out pairwise accuracy (r_chosen > r_rejected, ties count as wrong), loss and mean margin.

Output: `<out_dir>/final/model`: weights, tokenizer and `verirl_prm.json` (kind token_classification,
one label, default aggregation "last"), so `verirl serve --prm <dir>` serves it as the one-step case of
step scoring, P(good) = sigmoid(r); `RewardModelScorer` reads it the same way in-process.

Not handled: resume of an interrupted run (the final checkpoint holds the recipe state all the same);
pairs longer than `data.max_length` are dropped and counted (`dropped_pairs`), never truncated: a cut
response would move the tag and score a different text.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from tasks.prm_format import PRMFormat, render_ids
from trainer.checkpoint import RecipeState, save_checkpoint, start_run, starting_model_dir
from trainer.grpo import batch_order
from trainer.optim import build_optimizer, build_scheduler
from trainer.preferences import PreferencePair, load_pairs
from trainer.rm_config import RMConfig

__all__ = ["rm_format", "encode_pairs", "collate_rows", "sequence_scores", "bradley_terry_loss",
           "evaluate_pairs", "load_scalar_model", "RewardModelScorer", "train"]

EncodedPair = tuple[list[int], list[int]]  # (chosen ids, rejected ids); each is scored at its last token


def rm_format(step_tag: str, step_separator: str, max_length: int, tokenizer: Any) -> PRMFormat:
    """The reward model's PRM format; an empty tag means the tokenizer's EOS token."""
    tag = step_tag or tokenizer.eos_token
    if not tag:
        raise ValueError("step_tag: empty and the tokenizer has no EOS token; give one")
    return PRMFormat(kind="token_classification", step_tag=tag, step_separator=step_separator,
                     default_aggregation="last", max_length=max_length)


def encode_pairs(pairs: Sequence[PreferencePair], tokenizer: Any, fmt: PRMFormat) -> tuple[list[EncodedPair], int]:
    """Token ids of each pair's two texts in the PRM format, and how many pairs were dropped for
    exceeding `fmt.max_length`."""
    out = []
    for p in pairs:
        chosen = render_ids(tokenizer, fmt, p.prompt, [p.chosen])[0]
        rejected = render_ids(tokenizer, fmt, p.prompt, [p.rejected])[0]
        if max(len(chosen), len(rejected)) <= fmt.max_length:
            out.append((chosen, rejected))
    return out, len(pairs) - len(out)


def collate_rows(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded input ids [n, L], attention mask [n, L] and each row's last real position [n]."""
    L = max(len(r) for r in rows)
    ids = torch.full((len(rows), L), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), L), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, :len(row)] = 1
    return ids, mask, torch.tensor([len(r) - 1 for r in rows])


def sequence_scores(model: Any, rows: Sequence[Sequence[int]], pad_id: int, device: str) -> torch.Tensor:
    """[n] the head's output at each row's last token."""
    ids, mask, last = (t.to(device) for t in collate_rows(rows, pad_id))
    logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[..., 0]    # [n, L]
    return logits.float().gather(1, last.unsqueeze(1)).squeeze(1)


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """[B] per-pair loss -log sigmoid(r_chosen - r_rejected) (softplus form: no overflow)."""
    return torch.nn.functional.softplus(rejected - chosen)


def _pair_scores(model: Any, part: Sequence[EncodedPair], pad_id: int,
                 device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Chosen and rejected rewards [B] each, from one forward pass over the 2B rows."""
    scores = sequence_scores(model, [c for c, _ in part] + [r for _, r in part], pad_id, device)   # [2B]
    return scores[:len(part)], scores[len(part):]


def evaluate_pairs(model: Any, pairs: Sequence[EncodedPair], pad_id: int, batch_size: int,
                   device: str) -> dict[str, float]:
    """Held-out `loss`, pairwise `accuracy` (strictly higher chosen reward) and mean `margin`."""
    was_training = model.training
    model.eval()
    chosen, rejected = [], []
    with torch.no_grad():
        for s in range(0, len(pairs), batch_size):
            c, r = _pair_scores(model, pairs[s:s + batch_size], pad_id, device)
            chosen.append(c)
            rejected.append(r)
    model.train(was_training)
    c, r = torch.cat(chosen), torch.cat(rejected)
    return {"loss": float(bradley_terry_loss(c, r).mean()), "accuracy": float((c > r).float().mean()),
            "margin": float((c - r).mean())}


def load_scalar_model(path: str | Path, dtype: str = "float32", device: str = "cpu") -> Any:
    """A model directory (causal LM or token classification) with a one-output token head: the reward
    model, or PPO's critic. A causal LM's backbone is kept and the head is new."""
    from transformers import AutoConfig, AutoModelForTokenClassification
    config = AutoConfig.from_pretrained(path, num_labels=1, classifier_dropout=0.0)
    return AutoModelForTokenClassification.from_pretrained(path, config=config, dtype=getattr(torch, dtype)).to(device)


class RewardModelScorer:
    """A trained reward model directory, in this process: `scores(prompts, responses)` are the
    probabilities sigmoid(r) that the service would return for the one-step chain [response]."""

    def __init__(self, path: str | Path, *, device: str = "cpu", batch_size: int = 32):
        from transformers import AutoTokenizer
        self.fmt = PRMFormat.load(path)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = load_scalar_model(path, device=device).eval()
        self.device, self.batch_size = device, batch_size
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    def scores(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        rows = [render_ids(self.tokenizer, self.fmt, p, [r])[0] for p, r in zip(prompts, responses, strict=True)]
        too_long = [i for i, row in enumerate(rows) if len(row) > self.fmt.max_length]
        if too_long:
            raise ValueError(f"responses {too_long[:5]} exceed the reward model's max_length {self.fmt.max_length}")
        out = []
        with torch.no_grad():
            for s in range(0, len(rows), self.batch_size):
                out.extend(torch.sigmoid(sequence_scores(self.model, rows[s:s + self.batch_size], self.pad_id,
                                                         self.device)).tolist())
        return out


# ---------------------------------------------------------------- the recipe
def train(cfg: RMConfig) -> dict[str, Any]:
    """Train the reward model; returns the last step's metrics, `eval_history` and `model_dir`."""
    out = start_run(cfg)
    device = cfg.model.device

    from transformers import AutoTokenizer
    backbone_dir = starting_model_dir(cfg.model, out)
    tokenizer = AutoTokenizer.from_pretrained(backbone_dir)
    model = load_scalar_model(backbone_dir, cfg.model.dtype, device).train()
    if cfg.model.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    optimizer = build_optimizer(model, cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.betas)
    scheduler = build_scheduler(optimizer, cfg.optim.schedule, cfg.steps, cfg.optim.warmup_steps)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    fmt = rm_format(cfg.step_tag, cfg.step_separator, cfg.data.max_length, tokenizer)
    train_pairs, eval_pairs = load_pairs(cfg.data, tokenizer)
    train_enc, dropped = encode_pairs(train_pairs, tokenizer, fmt)
    eval_enc, eval_dropped = encode_pairs(eval_pairs, tokenizer, fmt)
    if not train_enc or not eval_enc:
        raise ValueError(f"no pair fits data.max_length={cfg.data.max_length}")

    def evaluate() -> dict[str, float]:
        t = time.monotonic()
        result = evaluate_pairs(model, eval_enc, pad_id, cfg.eval.batch_size, device)
        return {**{f"eval_{k}": v for k, v in result.items()}, "eval_seconds": round(time.monotonic() - t, 3)}

    history = [{"step": 0, **evaluate(), "train_pairs": len(train_enc), "dropped_pairs": dropped,
                "eval_pairs": len(eval_enc), "eval_dropped_pairs": eval_dropped}]
    metrics: dict[str, Any] = {}
    state = RecipeState(0, 0)
    with open(out / "metrics.jsonl", "a") as log:
        log.write(json.dumps(history[-1]) + "\n")
        for step in range(cfg.steps):
            t0 = time.monotonic()
            batch = [train_enc[i] for i in batch_order(len(train_enc), cfg.data.seed, state.data_position,
                                                       cfg.batch_size)]
            optimizer.zero_grad(set_to_none=True)
            total = correct = margin = 0.0
            for s in range(0, len(batch), cfg.micro_batch_size):  # accumulation: each part / the batch's pairs
                c, r = _pair_scores(model, batch[s:s + cfg.micro_batch_size], pad_id, device)
                loss = bradley_terry_loss(c, r).sum()
                (loss / len(batch)).backward()
                total += float(loss.detach())
                correct += float((c > r).sum())
                margin += float((c - r).detach().sum())
            clip = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf")
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip))
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            state = RecipeState(step + 1, state.data_position + cfg.batch_size)
            metrics = {"step": state.step, "lr": lr, "loss": total / len(batch), "accuracy": correct / len(batch),
                       "margin": margin / len(batch), "grad_norm": grad_norm,
                       "seconds": round(time.monotonic() - t0, 4)}
            if (cfg.eval.every and state.step % cfg.eval.every == 0) or state.step == cfg.steps:
                metrics.update(evaluate())
                history.append({k: v for k, v in metrics.items() if k == "step" or k.startswith("eval_")})
            log.write(json.dumps(metrics) + "\n")
            log.flush()
    final = out / "final"
    if final.exists():  # a rerun into the same out_dir replaces its result
        shutil.rmtree(final)
    save_checkpoint(final, model, tokenizer, optimizer, scheduler, state)
    fmt.save(final / "model")
    return {**metrics, "eval_history": history, "model_dir": str(final / "model")}
