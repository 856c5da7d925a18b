"""Direct preference optimisation (DPO): the recipe, top to bottom.

    verirl train dpo --config configs/dpo_demo.yaml [key=value ...]

Data: `{prompt, chosen, rejected}` pairs (trainer/preferences.py: synthetic reference-vs-corrupted
chains, verified pairs from judged groups, or a JSONL file). A response's log-prob is the sum over its
tokens (EOS appended, as in SFT: the policy learns to stop) of log p(token | prompt, earlier tokens);
prompt and response are tokenized apart, as SFT does, so the boundary is the one generation sees.

Loss per pair (Rafailov et al. 2023), with policy log-probs pi_c, pi_r and reference ref_c, ref_r:
    h = beta * ((pi_c - ref_c) - (pi_r - ref_r))
    loss = -(1 - eps) log sigmoid(h) - eps log sigmoid(-h)      eps = label_smoothing (conservative DPO)
Implicit rewards: beta (pi_c - ref_c) for the chosen, beta (pi_r - ref_r) for the rejected; logged per
step and on held-out pairs: their mean, the margin (chosen - rejected) and the accuracy (chosen >
rejected, ties wrong).

The reference is frozen: its log-probs of every training and held-out response are computed once,
before the first update (the initial policy's, or the `reference` directory's), and the reference model
is not kept. With the initial policy as reference, the policy itself computes them before it changes.

Not handled: resume (the final checkpoint holds the recipe state); pairs longer than
`data.max_length` are dropped and counted, not truncated.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from trainer.checkpoint import RecipeState, save_checkpoint, start_run, starting_model_dir
from trainer.dpo_config import DPOConfig
from trainer.grpo import batch_order
from trainer.losses import token_logprobs
from trainer.optim import build_optimizer, build_scheduler
from trainer.preferences import PreferencePair, load_pairs
from trainer.sft import IGNORE, Example, Segment, collate, tokenize

__all__ = ["DPOTerms", "dpo_loss", "encode_pairs", "sequence_logps", "pair_logps", "reference_logps", "train"]

EncodedPair = tuple[Segment, Segment]  # (prompt ids, chosen ids + EOS), (prompt ids, rejected ids + EOS)


@dataclass(frozen=True)
class DPOTerms:
    loss: torch.Tensor              # [B] per pair
    chosen_rewards: torch.Tensor    # [B] beta (pi_c - ref_c), detached
    rejected_rewards: torch.Tensor  # [B] beta (pi_r - ref_r), detached


def dpo_loss(pi_c: torch.Tensor, pi_r: torch.Tensor, ref_c: torch.Tensor, ref_r: torch.Tensor, beta: float,
             label_smoothing: float = 0.0) -> DPOTerms:
    """The DPO loss of B pairs from [B] sequence log-probs (policy and reference, chosen and rejected)."""
    h = beta * ((pi_c - ref_c) - (pi_r - ref_r))                                          # [B]
    logsig = torch.nn.functional.logsigmoid
    loss = -(1 - label_smoothing) * logsig(h) - label_smoothing * logsig(-h)
    return DPOTerms(loss, (beta * (pi_c - ref_c)).detach(), (beta * (pi_r - ref_r)).detach())


def encode_pairs(pairs: Sequence[PreferencePair], tokenizer: Any, max_length: int) -> tuple[list[EncodedPair], int]:
    """Each pair's two (prompt, response) segments; pairs with a side over `max_length` tokens are
    dropped and counted."""
    out = []
    for p in pairs:
        chosen = tokenize(Example(p.prompt, p.chosen), tokenizer)
        rejected = tokenize(Example(p.prompt, p.rejected), tokenizer)
        if max(len(s[0]) + len(s[1]) for s in (chosen, rejected)) <= max_length:
            out.append((chosen, rejected))
    return out, len(pairs) - len(out)


def sequence_logps(model: Any, segments: Sequence[Segment], pad_id: int, device: str) -> torch.Tensor:
    """[n] sum of the response tokens' log-probs, one row per (prompt, response) segment."""
    batch = collate([[s] for s in segments], pad_id).to(device)
    logits = model(input_ids=batch.input_ids, position_ids=batch.position_ids, use_cache=False).logits
    targets = batch.labels[:, 1:]                                                        # [n, L-1]
    mask = (targets != IGNORE).float()
    logp, _ = token_logprobs(logits[:, :-1], targets.clamp(min=0), 1.0)                  # [n, L-1]
    return (logp * mask).sum(-1)


def pair_logps(model: Any, part: Sequence[EncodedPair], pad_id: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Chosen and rejected log-probs [B] each, from one forward pass over the 2B rows."""
    logps = sequence_logps(model, [c for c, _ in part] + [r for _, r in part], pad_id, device)    # [2B]
    return logps[:len(part)], logps[len(part):]


def reference_logps(model: Any, pairs: Sequence[EncodedPair], pad_id: int, batch_size: int,
                    device: str) -> torch.Tensor:
    """[P, 2] (chosen, rejected) log-probs of every pair under `model`, without a graph."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        parts = [torch.stack(pair_logps(model, pairs[s:s + batch_size], pad_id, device), -1).cpu()
                 for s in range(0, len(pairs), batch_size)]
    model.train(was_training)
    return torch.cat(parts)


def _evaluate(model: Any, pairs: Sequence[EncodedPair], ref: torch.Tensor, cfg: DPOConfig,
              pad_id: int) -> dict[str, float]:
    pi = reference_logps(model, pairs, pad_id, cfg.eval.batch_size, cfg.model.device)   # [P, 2] now, no graph
    terms = dpo_loss(pi[:, 0], pi[:, 1], ref[:, 0], ref[:, 1], cfg.beta, cfg.label_smoothing)
    return _summary(terms, "eval_")


def _summary(terms: DPOTerms, prefix: str = "") -> dict[str, float]:
    c, r = terms.chosen_rewards, terms.rejected_rewards
    return {f"{prefix}loss": float(terms.loss.mean()), f"{prefix}reward_margin": float((c - r).mean()),
            f"{prefix}reward_accuracy": float((c > r).float().mean()), f"{prefix}chosen_reward": float(c.mean()),
            f"{prefix}rejected_reward": float(r.mean())}


# ---------------------------------------------------------------- the recipe
def train(cfg: DPOConfig) -> dict[str, Any]:
    """Run DPO; returns the last step's metrics, `eval_history` and `model_dir` (a policy directory)."""
    out = start_run(cfg)
    device = cfg.model.device

    from transformers import AutoModelForCausalLM, AutoTokenizer
    model_dir = starting_model_dir(cfg.model, out)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    dtype = getattr(torch, cfg.model.dtype)
    policy = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device).train()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    train_pairs, eval_pairs = load_pairs(cfg.data, tokenizer)
    train_enc, dropped = encode_pairs(train_pairs, tokenizer, cfg.data.max_length)
    eval_enc, eval_dropped = encode_pairs(eval_pairs, tokenizer, cfg.data.max_length)
    if not train_enc or not eval_enc:
        raise ValueError(f"no pair fits data.max_length={cfg.data.max_length}")

    # the frozen reference's log-probs, once: [P, 2] (chosen, rejected) for the training and held-out pairs
    t = time.monotonic()
    reference = (AutoModelForCausalLM.from_pretrained(cfg.reference, dtype=dtype).to(device)
                 if cfg.reference else policy)
    ref_train = reference_logps(reference, train_enc, pad_id, cfg.eval.batch_size, device)
    ref_eval = reference_logps(reference, eval_enc, pad_id, cfg.eval.batch_size, device)
    del reference
    reference_seconds = round(time.monotonic() - t, 3)

    if cfg.model.gradient_checkpointing:
        policy.gradient_checkpointing_enable()
    optimizer = build_optimizer(policy, cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.betas)
    scheduler = build_scheduler(optimizer, cfg.optim.schedule, cfg.steps, cfg.optim.warmup_steps)

    def evaluate() -> dict[str, float]:
        t = time.monotonic()
        return {**_evaluate(policy, eval_enc, ref_eval, cfg, pad_id), "eval_seconds": round(time.monotonic() - t, 3)}

    history = [{"step": 0, **evaluate(), "train_pairs": len(train_enc), "dropped_pairs": dropped,
                "eval_pairs": len(eval_enc), "eval_dropped_pairs": eval_dropped,
                "reference_seconds": reference_seconds}]
    metrics: dict[str, Any] = {}
    state = RecipeState(0, 0)
    with open(out / "metrics.jsonl", "a") as log:
        log.write(json.dumps(history[-1]) + "\n")
        for step in range(cfg.steps):
            t0 = time.monotonic()
            index = batch_order(len(train_enc), cfg.data.seed, state.data_position, cfg.batch_size)
            optimizer.zero_grad(set_to_none=True)
            parts: list[DPOTerms] = []
            for s in range(0, len(index), cfg.micro_batch_size):  # accumulation: each part / the batch's pairs
                rows = index[s:s + cfg.micro_batch_size]
                pi_c, pi_r = pair_logps(policy, [train_enc[i] for i in rows], pad_id, device)
                ref = ref_train[rows].to(device)                                        # [m, 2]
                terms = dpo_loss(pi_c, pi_r, ref[:, 0], ref[:, 1], cfg.beta, cfg.label_smoothing)
                (terms.loss.sum() / len(index)).backward()
                parts.append(DPOTerms(terms.loss.detach(), terms.chosen_rewards, terms.rejected_rewards))
            clip = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf")
            grad_norm = float(torch.nn.utils.clip_grad_norm_(policy.parameters(), clip))
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            state = RecipeState(step + 1, state.data_position + cfg.batch_size)
            whole = DPOTerms(*(torch.cat([getattr(p, k) for p in parts]) for k in ("loss", "chosen_rewards",
                                                                                  "rejected_rewards")))
            metrics = {"step": state.step, "lr": lr, **_summary(whole), "grad_norm": grad_norm,
                       "seconds": round(time.monotonic() - t0, 4)}
            if (cfg.eval.every and state.step % cfg.eval.every == 0) or state.step == cfg.steps:
                metrics.update(evaluate())
                history.append({k: v for k, v in metrics.items() if k == "step" or k.startswith("eval_")})
            log.write(json.dumps(metrics) + "\n")
            log.flush()
    final = out / "final"
    if final.exists():  # a rerun into the same out_dir replaces its result
        shutil.rmtree(final)
    save_checkpoint(final, policy, tokenizer, optimizer, scheduler, state)
    return {**metrics, "eval_history": history, "model_dir": str(final / "model")}
