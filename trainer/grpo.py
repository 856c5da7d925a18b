"""GRPO with verifier rewards: the recipe, top to bottom.

    python -m trainer.cli grpo --config configs/demo.yaml [key=value ...]

Each step: sample `group_size` completions for each of `prompts_per_step` prompts with the rollout
engine (or grow them step by step with the PRM-guided step sampler, trainer/step_sampler.py); score
them through the verifier service (gRPC), chunk by chunk while the next chunk generates
(`rollout.score_chunks`); with dynamic sampling, sample more prompts until the batch has enough groups
with reward variance; turn rewards into advantages; compute the
trainer's log-probs of the sampled tokens under the sampling weights ("old"), and the reference's when
beta > 0; run `ppo_epochs` passes of `mini_batches` optimizer steps, each accumulated over micro-batches;
sync the new weights into the engine; log; checkpoint. Batch shapes: see trainer/config.py.

Where this departs from the papers (DeepSeekMath GRPO, DAPO, Dr. GRPO):
  * "old" log-probs are the trainer's own, recomputed before the updates, not the engine's: the engine
    and the trainer differ numerically (bf16 vs fp32, other kernels), and the ratio must be 1 at the
    first update. The engine/trainer gap is handled by a capped importance weight instead (losses.py).
    With one optimizer step per batch (ppo_epochs 1, one mini-batch) they are not a separate pass: the
    update's own forward runs on those weights, and its detached log-probs are the old ones.
  * the KL term is in the loss (as in DeepSeekMath), not in the reward; beta 0 loads no reference.
  * zero-variance groups are dropped from the loss (filter by std) and counted. With
    `algo.dynamic_sampling` (DAPO) more prompts are sampled instead, but at most `max_sampling_rounds`
    extra rounds, each of about (missing groups / share of useful groups so far) prompts, where DAPO
    samples whole batches until full; when the cap is hit the batch is filled with zero-variance groups,
    which the filter then drops (the batch shrinks, as without dynamic sampling). Surplus useful groups
    of the last round are discarded, as in DAPO. The data position advances by every prompt drawn.
  * the LR schedule advances once per GRPO step, not per optimizer step.
  * weights are synced once after the step's last optimizer step, not after each one: nothing samples
    in between, so earlier syncs would be wasted copies.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from tasks.prompts import format_prompt
from tasks.types import Problem
from trainer.advantages import ADVANTAGES, NEEDS_STEPS, AdvantageInput, zero_variance
from trainer.batches import Rollouts, accumulate_gradients, collate, no_grad_logprobs
from trainer.checkpoint import RecipeState, load_recipe_state, save_checkpoint, start_run, starting_model_dir
from trainer.compiled_layers import CompiledLayers
from trainer.config import AlgoConfig, GRPOConfig, to_dict
from trainer.losses import BatchScale, GRPOLoss, LossSettings
from trainer.optim import build_optimizer, build_scheduler
from trainer.packed_rows import packing
from trainer.logging_sinks import MetricSinks
from trainer.rewards import RewardSettings, Scored, merge_scored, score_completions, step_token_ends
from trainer.rollout import Group, SamplingConfig, build_engine
from trainer.rollout.pipeline import generate_and_score
from trainer.step_sampler import StepSampler

__all__ = ["Batch", "Round", "train", "load_problems", "sample_batch", "sample_round", "choose_groups"]


# ---------------------------------------------------------------- data
def load_problems(cfg: GRPOConfig) -> list[Problem]:
    d = cfg.data
    if d.source == "synthetic":
        from tasks.synthetic import SyntheticConfig, generate
        knobs = SyntheticConfig(min_steps=d.min_steps, max_steps=d.max_steps, max_value=d.max_value)
        return generate(d.num_problems, split="train", seed=d.seed, config=knobs)
    from tasks.files import read_jsonl
    return [Problem.from_dict(row) for row in read_jsonl(d.path)]


def batch_order(n: int, seed: int, position: int, count: int) -> list[int]:
    """Problem indices `position .. position+count-1` of an endless stream of per-epoch shuffles."""
    out = []
    for p in range(position, position + count):
        epoch, offset = divmod(p, n)
        out.append(_epoch_order(n, seed, epoch)[offset])
    return out


@functools.lru_cache(maxsize=4)
def _epoch_order(n: int, seed: int, epoch: int) -> tuple[int, ...]:
    """One epoch's shuffle, computed once (shuffling n indices for every item drawn made a 32-row batch
    of a 20,000-row set cost 0.5 s of CPU: most of a small model's training step)."""
    order = list(range(n))
    random.Random(f"{seed}:{epoch}").shuffle(order)
    return tuple(order)


# ---------------------------------------------------------------- tensors
def step_tensors(scored: Scored, groups: list[Group], tokenizer: Any, T: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, G, S] step rewards (NaN-padded) and [B, G, S] token index of each step's end."""
    B, G = len(groups), len(groups[0].completions)
    S = max((len(s) for s in scored.step_scores if s), default=1)
    rewards = torch.full((B * G, S), float("nan"))
    ends = torch.full((B * G, S), -1, dtype=torch.long)
    completions = [c for g in groups for c in g.completions]
    for i, (scores, c) in enumerate(zip(scored.step_scores, completions)):
        if scores:
            rewards[i, :len(scores)] = torch.tensor(scores)
            ends[i, :len(scores)] = torch.tensor(step_token_ends(c.token_ids, scored.step_char_ends[i],
                                                                 tokenizer)[:len(scores)]).clamp(max=T - 1)
    return rewards.view(B, G, S), ends.view(B, G, S)


# ---------------------------------------------------------------- sampling (+ dynamic sampling)
@dataclass(frozen=True)
class Batch:
    """The step's groups after (dynamic) sampling, scored; B groups of G completions."""
    problems: list[Problem]     # [B]
    groups: list[Group]         # [B]
    scored: Scored              # N = B*G completions, row b*G + g
    rounds: int                 # generation rounds (1 + extra rounds of dynamic sampling)
    prompts_sampled: int        # prompts drawn from the data this step (data position advances by this)
    zero_std_sampled: int       # zero-variance groups among all groups sampled, every round
    seconds: dict[str, float]   # generate, reward (waited for after generation), reward_busy
    sampler_stats: Counter      # step sampler counts (accept rates), empty for plain groups
    reward_mean_sampled: float  # over every judged completion sampled, all rounds (the batch's is biased
                                # toward groups with signal under dynamic sampling)


def _draw_count(B: int, useful: int, drawn: int) -> int:
    """Prompts for the next dynamic-sampling round: the missing groups divided by the share of useful
    groups seen so far (all B when none was useful yet), at most B."""
    missing = B - useful
    return min(B, math.ceil(missing * drawn / useful)) if useful else B


def next_round_count(a: AlgoConfig, B: int, useful: int, drawn: int, rounds: int) -> int:
    """Prompts of the next sampling round after `rounds` rounds drew `drawn` groups, `useful` of them
    with reward variance; 0: the batch's sampling is over (no dynamic sampling, B useful groups, or
    max_sampling_rounds extra rounds made)."""
    if not a.dynamic_sampling or useful >= B or rounds > a.max_sampling_rounds:
        return 0
    return _draw_count(B, useful, drawn)


def advantage_batch(groups: list[Group], scored: Scored, tokenizer: Any, a: AlgoConfig,
                    G: int, batch_std: torch.Tensor | None = None) -> tuple[Rollouts, torch.Tensor, Any, torch.Tensor]:
    """(rollouts, valid [B, G], the advantage function's output, kept row indices [K]) of scored groups:
    per-token advantages, groups without signal counted (and dropped with algo.filter_zero_std),
    truncated rows dropped with algo.mask_truncated. `batch_std`: grpo_batch_std's std, when the batch
    is more than these groups (torchrun)."""
    rollouts = collate(groups, tokenizer.pad_token_id)
    T = rollouts.mask.shape[1]
    rewards = torch.tensor(scored.rewards).view(-1, G)                      # [B, G]
    valid = torch.tensor(scored.valid).view(-1, G)                          # [B, G]
    step_rewards, step_ends = (step_tensors(scored, groups, tokenizer, T) if a.advantage in NEEDS_STEPS
                               else (None, None))
    adv = ADVANTAGES[a.advantage](AdvantageInput(rewards, valid, rollouts.mask, step_rewards, step_ends,
                                                 a.process_weight, batch_std=batch_std))
    keep = adv.keep(a.filter_zero_std)                                      # [N] bool
    if a.mask_truncated:
        keep &= ~rollouts.truncated
    return rollouts, valid, adv, keep.nonzero().squeeze(-1)


@dataclass(frozen=True)
class Round:
    """One generation round: `count` prompts from data position `position`, sampled and scored."""
    problems: list[Problem]     # [b]
    groups: list[Group]         # [b]
    scored: Scored              # b*G completions
    zero: list[bool]            # [b] the group's rewards have zero variance
    seconds: dict[str, float]   # generate, reward, reward_busy
    stats: Counter              # step sampler counts


def sample_round(cfg: GRPOConfig, engine: Any, sampler: StepSampler | None, client: Any, problems: list[Problem],
                 tokenizer: Any, rewards_cfg: RewardSettings, step: int, position: int, count: int,
                 round_index: int) -> Round:
    """Sample `count` prompts of the data order from `position`, group_size completions each, and score
    them. The hf engine reseeds per call: one seed per (cfg.seed, step, round), chunks add their index."""
    r, G = cfg.rollout, cfg.rollout.group_size
    batch = [problems[i] for i in batch_order(len(problems), cfg.data.seed, position, count)]
    prompts = [format_prompt(p, cfg.data.prompt_style or None, tokenizer=tokenizer, chat=cfg.data.chat) for p in batch]
    sampling = SamplingConfig(max_tokens=r.max_tokens, temperature=r.temperature, top_p=r.top_p, top_k=r.top_k,
                              seed=(cfg.seed * 1_000_003 + step) * 1_000_033 + 7_919 * round_index)

    def score(start: int, part: list[Group]) -> Scored:
        return score_completions(client, [p for p in batch[start:start + len(part)] for _ in range(G)],
                                 [c.text for g in part for c in g.completions], rewards_cfg)

    stats: Counter = Counter()
    if sampler is not None:  # steps are scored inside the sampler; the outcome after it, not overlapped
        t = time.monotonic()
        groups, counts = sampler.sample(batch, prompts, G)
        stats.update(counts)
        t_scoring = time.monotonic()
        parts = [score(0, groups)]
        scoring = time.monotonic() - t_scoring
        seconds = {"generate": t_scoring - t, "reward": scoring, "reward_busy": scoring}
    else:
        groups, parts, timing = generate_and_score(engine, prompts, G, sampling, score, r.score_chunks)
        seconds = {"generate": timing.generate, "reward": timing.reward_wait, "reward_busy": timing.reward_busy}
    scored = merge_scored(parts)
    zero = zero_variance(torch.tensor(scored.rewards).view(-1, G), torch.tensor(scored.valid).view(-1, G))
    return Round(batch, groups, scored, zero.tolist(), seconds, stats)


def choose_groups(zero: list[bool], B: int) -> list[int]:
    """Indices of the batch among groups sampled in order (`zero`: no reward variance): the first B
    with variance, filled up with the first zero-variance ones when fewer were found; in sampling order."""
    chosen = [b for b, z in enumerate(zero) if not z][:B]
    chosen += [b for b, z in enumerate(zero) if z][:B - len(chosen)]
    return sorted(chosen)


def sample_batch(cfg: GRPOConfig, engine: Any, sampler: StepSampler | None, client: Any, problems: list[Problem],
                 tokenizer: Any, rewards_cfg: RewardSettings, step: int, position: int) -> Batch:
    """Sample and score `prompts_per_step` groups. With `algo.dynamic_sampling`, groups whose rewards
    have zero variance are set aside and more prompts are sampled, at most `max_sampling_rounds` extra
    rounds, until `prompts_per_step` groups carry signal; the batch is the first such groups, filled
    up with zero-variance ones when the cap is hit (those are then dropped by the std filter)."""
    B = cfg.rollout.prompts_per_step
    rounds: list[Round] = []
    zero: list[bool] = []
    count = B
    while count:
        rounds.append(sample_round(cfg, engine, sampler, client, problems, tokenizer, rewards_cfg, step,
                                   position + len(zero), count, len(rounds)))
        zero += rounds[-1].zero
        count = next_round_count(cfg.algo, B, zero.count(False), len(zero), len(rounds))
    chosen = choose_groups(zero, B)
    problems_all = [p for x in rounds for p in x.problems]
    groups_all = [g for x in rounds for g in x.groups]
    everything = merge_scored([x.scored for x in rounds])
    G = cfg.rollout.group_size
    return Batch([problems_all[b] for b in chosen], [groups_all[b] for b in chosen],
                 everything.rows([b * G + g for b in chosen for g in range(G)]), len(rounds), len(zero),
                 sum(zero), _add_seconds([x.seconds for x in rounds]), sum((x.stats for x in rounds), Counter()),
                 _judged_mean(everything))


def _add_seconds(parts: list[dict[str, float]]) -> dict[str, float]:
    out = {"generate": 0.0, "reward": 0.0, "reward_busy": 0.0}
    for p in parts:
        for k, v in p.items():
            out[k] = out.get(k, 0.0) + v
    return out


def judged_rewards(scored: Scored) -> list[float]:
    """The rewards of the completions that were judged (valid)."""
    return [x for x, ok in zip(scored.rewards, scored.valid) if ok]


def _judged_mean(scored: Scored) -> float:
    judged = judged_rewards(scored)
    return sum(judged) / len(judged) if judged else float("nan")


# ---------------------------------------------------------------- setup helpers
def _initial_model_dir(cfg: GRPOConfig, out: Path) -> Path:
    """The model the run starts from (and the KL reference, also when resuming)."""
    return starting_model_dir(cfg.model, out)


def _load_model(path: Path, cfg: GRPOConfig, trainable: bool) -> Any:
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, cfg.model.dtype)).to(cfg.model.device)
    if trainable:
        model.train()
        if cfg.model.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        return model
    return model.eval().requires_grad_(False)


def _engine(cfg: GRPOConfig, path: Path, model: Any, tokenizer: Any, torchrun: bool = False) -> Any:
    tensor_parallel = cfg.rollout.vllm_tensor_parallel if torchrun else 1
    return build_engine(cfg.rollout, path, model, tokenizer, cfg.seed, torchrun=torchrun, tensor_parallel=tensor_parallel)


@contextlib.contextmanager
def _verifier(cfg: GRPOConfig) -> Iterator[Any]:
    """A client of the configured service; with no address, a server started for this run (the demo)."""
    from verifier_service.client import VerifierClient
    if cfg.reward.address:
        with VerifierClient(cfg.reward.address, timeout=cfg.reward.timeout_s) as client:
            yield client
        return
    from verifier_service.config import ServerConfig
    from verifier_service.server import embedded_server
    # The sandbox (root, fork-servers) only when code is rewarded; a math-only run needs neither.
    sandbox = "full" if cfg.reward.code > 0 else "off"
    with embedded_server(ServerConfig(math_workers=cfg.reward.server_math_workers, sandbox=sandbox)) as address:
        with VerifierClient(address, timeout=cfg.reward.timeout_s) as client:
            yield client


def _mean(x: torch.Tensor) -> float:
    return float(x.float().mean()) if x.numel() else float("nan")


def _sampler_metrics(stats: Counter) -> dict[str, float]:
    """Step sampler accept rates: of the steps taken, the share accepted in the first round, after
    resampling, and forced (best of all rounds, below the threshold)."""
    taken = stats["accepted_first"] + stats["accepted_resampled"] + stats["forced"]
    if not taken:
        return {}
    return {"step_accept_first": stats["accepted_first"] / taken,
            "step_accept_resampled": stats["accepted_resampled"] / taken,
            "step_forced": stats["forced"] / taken, "step_sampler_rounds": stats["rounds"],
            "step_candidates_scored": stats["candidates_scored"], "step_unjudged": stats["unjudged"]}


def _sync_metrics(engine: Any) -> dict[str, int]:
    last = getattr(engine, "last_sync", None)  # only the vLLM engine copies weights in buckets
    return {f"weight_sync_{k}": v for k, v in last.items()} if last else {}


# ---------------------------------------------------------------- the recipe
def train(cfg: GRPOConfig, *,
          on_step: Callable[[int, dict[str, Any], Any], bool | None] | None = None) -> dict[str, Any]:
    """Run GRPO; returns the last step's metrics plus `reward_history`. Writes into cfg.out_dir.
    `on_step(step, metrics, policy)` is called after each step (a caller's progress report, a held-out
    evaluation of the policy, a time budget); returning True ends the run there (final checkpoint written)."""
    from trainer import distributed  # under torchrun (WORLD_SIZE > 1): the FSDP2 recipe, trainer/distributed.py
    if distributed.world_size() > 1:
        return distributed.train(cfg, on_step=on_step)
    if cfg.rollout.engine == "vllm" and cfg.rollout.vllm_tensor_parallel > 1:
        raise ValueError(f"rollout.vllm_tensor_parallel: {cfg.rollout.vllm_tensor_parallel} needs torchrun with "
                         "that many ranks per engine (one process runs one unsharded engine)")
    out = start_run(cfg)

    from transformers import AutoTokenizer
    initial_dir = _initial_model_dir(cfg, out)
    model_dir = Path(cfg.resume) / "model" if cfg.resume else initial_dir  # resume: the engine starts from it too
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    policy = _load_model(model_dir, cfg, trainable=True)
    reference = _load_model(initial_dir, cfg, trainable=False) if cfg.algo.beta > 0 else None
    optimizer = build_optimizer(policy, cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.betas,
                                fused=cfg.model.device.startswith("cuda"))
    scheduler = build_scheduler(optimizer, cfg.optim.schedule, cfg.steps, cfg.optim.warmup_steps)
    state = RecipeState(step=0, data_position=0)
    if cfg.resume:
        state = load_recipe_state(cfg.resume, optimizer, scheduler)
    engine = _engine(cfg, model_dir, policy, tokenizer)
    compiled = CompiledLayers(policy, cfg.algo.compile_layers)  # the trainer's passes only, not generation

    a = cfg.algo
    loss_fn = GRPOLoss(LossSettings(eps_low=a.eps_low, eps_high=a.eps_high, beta=a.beta, kl=a.kl,
                                    aggregation=a.aggregation, is_level=a.is_level, is_cap=a.is_cap))
    rewards_cfg = RewardSettings(math=cfg.reward.math, code=cfg.reward.code, steps=cfg.reward.steps,
                                 want_step_scores=a.advantage in NEEDS_STEPS, unjudged=cfg.reward.unjudged,
                                 penalty=cfg.reward.penalty, timeout_s=cfg.reward.timeout_s,
                                 step_separator=cfg.reward.step_separator)
    r = cfg.rollout
    problems = load_problems(cfg)
    G, temperature = r.group_size, r.temperature
    device = cfg.model.device

    history: list[float] = []
    metrics: dict[str, Any] = {}
    with _verifier(cfg) as client, MetricSinks(out, cfg.log, total_steps=cfg.steps, first_step=state.step,
                                               config=to_dict(cfg)) as sinks, \
            open(out / "samples.jsonl", "a") as samples_log:
        sampler = (StepSampler(engine, client, cfg.step_sampler, tokenizer.eos_token_id, cfg.reward.timeout_s)
                   if r.sampler == "prm_steps" else None)
        for step in range(state.step, cfg.steps):
            t_step = time.monotonic()

            # 1-2. groups of completions, scored through the verifier service as chunks finish
            sampled = sample_batch(cfg, engine, sampler, client, problems, tokenizer, rewards_cfg, step,
                                   state.data_position)
            groups, scored, times = sampled.groups, sampled.scored, dict(sampled.seconds)
            completions = [c for g in groups for c in g.completions]
            engine.sleep()  # GPU vLLM: free its memory for the trainer until the sync

            # 3. advantages: [N, T] per token; groups without signal counted (and dropped)
            rollouts, valid, adv, kept = advantage_batch(groups, scored, tokenizer, a, G)
            N = len(rollouts.mask)

            # 4. old (sampling-weights) and reference log-probs, [N, T]
            t = time.monotonic()
            on_device = rollouts.rows(kept).to(device)
            advantages = adv.tokens[kept].to(device)                                 # [K, T]
            K = len(kept)
            # one optimizer step per batch: the update's own forward gives the old log-probs (micro_batch_loss)
            on_policy = a.ppo_epochs == 1 and min(a.mini_batches, K) <= 1
            old_logp, entropy = None, None
            if not on_policy:
                with compiled.active(), packing(policy, a.pack_rows):
                    old_logp, entropy = no_grad_logprobs(policy, on_device, temperature, a.micro_batch_size)
            ref_logp = (no_grad_logprobs(reference, on_device, temperature, a.micro_batch_size)[0]
                        if reference is not None else None)
            times["logprobs"] = time.monotonic() - t

            # 5. updates: ppo_epochs x mini_batches optimizer steps, micro-batches accumulated
            t = time.monotonic()
            sums: dict[str, float] = {}
            losses, grad_norms = [], []
            for epoch in range(a.ppo_epochs if K else 0):
                perm = torch.randperm(K, generator=torch.Generator().manual_seed(cfg.seed + 7919 * step + epoch))
                for part in torch.tensor_split(perm, min(a.mini_batches, K)):
                    scale = BatchScale(tokens=float(on_device.mask[part].sum()), sequences=float(len(part)),
                                       max_tokens=r.max_tokens)
                    optimizer.zero_grad(set_to_none=True)
                    with compiled.active(), packing(policy, a.pack_rows):
                        total = accumulate_gradients(policy, loss_fn, on_device, old_logp, ref_logp, advantages,
                                                     part, a.micro_batch_size, scale, temperature, sums)
                    clip = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf")
                    grad_norms.append(float(torch.nn.utils.clip_grad_norm_(policy.parameters(), clip)))
                    optimizer.step()
                    losses.append(total)
            scheduler.step()
            times["update"] = time.monotonic() - t

            # 6. the engine samples the next step with the new weights
            t = time.monotonic()
            engine.sync_weights(policy)
            times["weight_sync"] = time.monotonic() - t
            state = RecipeState(step=step + 1, data_position=state.data_position + sampled.prompts_sampled)
            times["total"] = time.monotonic() - t_step

            # 7. metrics, samples, checkpoint
            lengths = rollouts.mask.sum(-1)
            tokens_seen = float(on_device.mask.sum()) * max(1, a.ppo_epochs)
            judged = torch.tensor(scored.rewards)[valid.view(-1)]
            history.append(_mean(judged))
            metrics = {
                "step": step + 1, "lr": scheduler.get_last_lr()[0],
                "reward_mean": history[-1], "reward_std": float(judged.std(unbiased=False)) if judged.numel() else 0.0,
                **{f"reward_{k}": v for k, v in scored.check_means.items()},
                "statuses": {k: dict(v) for k, v in scored.statuses.items()}, "unjudged": scored.unjudged,
                "zero_std_groups": int(adv.zero_std.sum()), "zero_std_fraction": _mean(adv.zero_std),
                "sampling_rounds": sampled.rounds, "prompts_sampled": sampled.prompts_sampled,
                "reward_mean_sampled": sampled.reward_mean_sampled,
                "zero_std_groups_sampled": sampled.zero_std_sampled,
                "kept": K, "completions": N,
                "loss": sum(losses) / len(losses) if losses else float("nan"),
                "grad_norm": sum(grad_norms) / len(grad_norms) if grad_norms else float("nan"),
                **{k: v / tokens_seen for k, v in sums.items()},
                "entropy": (float(entropy.sum() if entropy is not None else sums.get("entropy", 0.0))
                            / float(on_device.mask.sum())) if K else float("nan"),
                "completion_length": _mean(lengths), "truncated_fraction": _mean(rollouts.truncated),
                "update_tokens": float(on_device.attention_mask.sum()) * max(1, a.ppo_epochs),  # prompt + completion
                "seconds": {k: round(v, 4) for k, v in times.items()},
                "reward_overlap_fraction": (1 - times["reward"] / times["reward_busy"]) if times["reward_busy"] else 0.0,
                "generate_tokens_per_s": float(lengths.sum()) / max(times["generate"], 1e-9),
                "verifier_seconds": scored.seconds,
                **_sampler_metrics(sampled.sampler_stats), **_sync_metrics(engine),
            }
            sinks.write(step + 1, metrics)
            for i in range(min(cfg.log_samples, N)):
                samples_log.write(json.dumps({"step": step + 1, "prompt": groups[i // G].prompt,
                                              "completion": completions[i].text,
                                              "reward": scored.rewards[i]}) + "\n")
            samples_log.flush()
            stop = bool(on_step(step + 1, metrics, policy)) if on_step is not None else False
            if cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0 and state.step < cfg.steps:
                save_checkpoint(out / f"checkpoint-{state.step}", policy, tokenizer, optimizer, scheduler, state)
            if stop:
                break
        save_checkpoint(out / f"checkpoint-{state.step}-final", policy, tokenizer, optimizer, scheduler, state)
    return {**metrics, "reward_history": history}
