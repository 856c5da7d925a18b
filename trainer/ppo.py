"""PPO with a value head, GAE and the KL penalty in the reward: the recipe, top to bottom.

    verirl train ppo --config configs/ppo_demo.yaml [key=value ...]

Each step: sample `samples_per_prompt` completions for each of `prompts_per_step` prompts with the
rollout engine (shared with GRPO); score each completion once, either through the verifier's checks
(`reward.source=verifier`, trainer/rewards.py) or with a trained reward model served by the verifier
(`reward.source=reward_model`: `score_steps` with the response as the one step, the RM's P(good) =
sigmoid(r)); compute the policy's ("old"), the reference's and the critic's values per token; build
per-token rewards

    r_t = -beta * (logp_t - ref_logp_t)          + score on the completion's last token

(the KL penalty in the reward, k1 estimator, as in Ziegler et al. 2019 / InstructGPT), advantages and
returns by GAE(gamma, lambda) over tokens, whitened advantages; then `ppo_epochs` passes of
`mini_batches` optimizer steps of the clipped policy loss (trainer/losses.py's PPO-clip, eps both ways)
and of the clipped value loss; update the KL coefficient (fixed, or adaptive towards `kl_target`); sync
the engine; log.

Choices and departures:
  * the critic is a separate model (a scalar head on its own copy of a backbone: the reward model's
    when rewards come from one, else the initial policy's), with its own optimizer: no value-loss
    weight to tune against the policy loss, and the policy's backbone is not pulled by value targets.
  * the value of completion token t is the critic's output at the position that predicts token t (the
    state before the token), the same position the token's log-prob is read from.
  * a completion the reward could not judge is excluded from the step (`unjudged=exclude`) or gets
    `penalty` (`penalize`), as in GRPO; a completion cut at max_tokens still gets its score.
  * "old" log-probs are the trainer's own (recomputed before the updates, as GRPO does); the engine's
    sampling log-probs only enter the capped importance weight (`algo.is_level`).
  * the adaptive controller follows Ziegler et al.: error = clip(KL / target - 1, -0.2, 0.2),
    beta <- beta * (1 + error * N / horizon), KL the mean over the step's sequences of sum_t (logp - ref).
Not handled: resume from a checkpoint; the value head sharing the policy's backbone.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections import Counter
from typing import Any, Iterator, Sequence

import torch

from tasks.prompts import format_prompt
from trainer.checkpoint import RecipeState, save_checkpoint, start_run, starting_model_dir
from trainer.batches import Rollouts, accumulate_gradients, collate, no_grad_logprobs
from trainer.grpo import batch_order, load_problems
from trainer.losses import BatchScale, GRPOLoss, LossSettings
from trainer.optim import build_optimizer, build_scheduler
from trainer.ppo_config import PPOConfig
from trainer.reward_model import load_scalar_model
from trainer.rewards import RewardSettings, score_completions
from trainer.rollout import SamplingConfig, build_engine

__all__ = ["gae", "whiten", "clipped_value_loss", "FixedKLController", "AdaptiveKLController", "KL_CONTROLLERS",
           "token_rewards", "critic_values", "reward_model_rewards", "train"]


# ---------------------------------------------------------------- components (pure)
def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over right-padded token rows: rewards, values, mask [n, T] ->
    (advantages, returns) [n, T]; the step after a row's last token is terminal (value 0)."""
    adv = torch.zeros_like(rewards)
    next_value = torch.zeros_like(rewards[:, 0])                                        # [n]
    next_adv = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        m = mask[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        a = delta + gamma * lam * next_adv
        adv[:, t] = a * m
        next_value, next_adv = values[:, t] * m, a * m   # padding after the last token resets both to 0
    return adv, (adv + values) * mask


def whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / std over the masked entries (population std); 0 elsewhere."""
    n = mask.sum().clamp(min=1)
    mean = (x * mask).sum() / n
    var = (((x - mean) * mask) ** 2).sum() / n
    return (x - mean) * torch.rsqrt(var + eps) * mask


def clipped_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
                       clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token 0.5 * max((v - R)^2, (v_clip - R)^2), v_clip = old + clamp(v - old, -clip, clip); and
    where the clipped term is the larger [n, T] bool (the clip is active)."""
    v_clip = old_values + (values - old_values).clamp(-clip, clip)
    plain, clipped = (values - returns) ** 2, (v_clip - returns) ** 2
    return 0.5 * torch.maximum(plain, clipped), clipped > plain


class FixedKLController:
    def __init__(self, value: float, target: float, horizon: int):
        self.value = value

    def update(self, kl: float, n: int) -> None:
        pass


class AdaptiveKLController:
    """Ziegler et al. 2019: move beta proportionally towards the KL target, at most 20% error per call."""

    def __init__(self, value: float, target: float, horizon: int):
        self.value, self.target, self.horizon = value, target, horizon

    def update(self, kl: float, n: int) -> None:
        error = min(max(kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n / self.horizon


KL_CONTROLLERS = {"fixed": FixedKLController, "adaptive": AdaptiveKLController}


def token_rewards(scores: torch.Tensor, logp: torch.Tensor, ref_logp: torch.Tensor | None, mask: torch.Tensor,
                  kl_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards [n, T]: -kl_coef (logp - ref_logp) on every token, plus `scores` [n] on each
    row's last token; and the per-sequence KL sum_t (logp - ref_logp) [n]."""
    kl = (logp - ref_logp) * mask if ref_logp is not None else torch.zeros_like(logp)   # [n, T]
    rewards = -kl_coef * kl
    last = (mask.sum(-1).long() - 1).clamp(min=0)                                       # [n]
    rewards[torch.arange(len(scores)), last] += scores
    return rewards, kl.sum(-1)


def critic_values(critic: Any, r: Rollouts) -> torch.Tensor:
    """[n, T] the critic's value of the state before each completion token (the position that predicts it)."""
    T = r.completion_ids.shape[1]
    out = critic(input_ids=r.input_ids, attention_mask=r.attention_mask, position_ids=r.position_ids,
                 use_cache=False).logits[..., 0].float()                                # [n, P+T]
    return out[:, -T - 1:-1] * r.mask


def reward_model_rewards(client: Any, prompts: Sequence[str], responses: Sequence[str],
                         timeout_s: float) -> tuple[list[float], list[bool], Counter]:
    """Scores of a reward model served by the verifier (`verirl serve --prm RM_DIR`): each response is
    the one step of a chain after its prompt; the score is the RM's P(good) = sigmoid(r). Returns
    (scores, judged, status counts). A blank response (the policy stopped at once) is no chain the
    service scores: it is not judged (status EMPTY), and `reward.unjudged` decides what it gets."""
    sent = [i for i, r in enumerate(responses) if r.strip()]
    items = [{"id": str(i), "problem": prompts[i], "steps": [responses[i]]} for i in sent]
    results = client.score_steps(items, timeout=timeout_s) if items else []
    scores, judged = [0.0] * len(responses), [False] * len(responses)
    statuses = Counter({"EMPTY": len(responses) - len(sent)} if len(sent) < len(responses) else {})
    for i, x in zip(sent, results):
        scores[i], judged[i] = (x.score if x.judged else 0.0), x.judged
        statuses[x.status] += 1
    return scores, judged, statuses


# ---------------------------------------------------------------- setup helpers
@contextlib.contextmanager
def _verifier(cfg: PPOConfig) -> Iterator[Any]:
    """A client of the configured service; with no address, a server started for this run (serving
    the reward model when rewards come from one)."""
    from verifier_service.client import VerifierClient
    rc = cfg.reward
    if rc.address:
        with VerifierClient(rc.address, timeout=rc.timeout_s) as client:
            yield client
        return
    from verifier_service.config import ServerConfig
    from verifier_service.prm.config import PRMConfig
    from verifier_service.server import embedded_server
    prm = PRMConfig(dir=rc.reward_model, device=rc.prm_device) if rc.source == "reward_model" else None
    server = ServerConfig(math_workers=rc.server_math_workers, sandbox="full" if rc.code > 0 else "off", prm=prm)
    with embedded_server(server) as address, VerifierClient(address, timeout=rc.timeout_s) as client:
        yield client


def _score(cfg: PPOConfig, client: Any, problems: list, prompts: list[str], texts: list[str]) -> dict[str, Any]:
    """Scores [N], valid [N] and status counts, from the configured source."""
    rc = cfg.reward
    if rc.source == "reward_model":
        scores, judged, statuses = reward_model_rewards(client, prompts, texts, rc.timeout_s)
        penalise = rc.unjudged == "penalize"
        scores = [s if ok or not penalise else rc.penalty for s, ok in zip(scores, judged)]
        return {"scores": scores, "valid": [ok or penalise for ok in judged],
                "statuses": {"reward_model": dict(statuses)}}
    scored = score_completions(client, problems, texts, RewardSettings(
        math=rc.math, code=rc.code, unjudged=rc.unjudged, penalty=rc.penalty, timeout_s=rc.timeout_s))
    return {"scores": scored.rewards, "valid": scored.valid,
            "statuses": {k: dict(v) for k, v in scored.statuses.items()}}


def _mean(x: torch.Tensor) -> float:
    return float(x.float().mean()) if x.numel() else float("nan")


# ---------------------------------------------------------------- the recipe
def train(cfg: PPOConfig) -> dict[str, Any]:
    """Run PPO; returns the last step's metrics plus `reward_history` and `model_dir`."""
    out = start_run(cfg)
    device, a, r = cfg.model.device, cfg.algo, cfg.rollout
    dtype = getattr(torch, cfg.model.dtype)

    from transformers import AutoModelForCausalLM, AutoTokenizer
    initial_dir = starting_model_dir(cfg.model, out)
    tokenizer = AutoTokenizer.from_pretrained(initial_dir)
    policy = AutoModelForCausalLM.from_pretrained(initial_dir, dtype=dtype).to(device).train()
    if cfg.model.gradient_checkpointing:
        policy.gradient_checkpointing_enable()
    use_reference = a.kl_coef > 0 or a.kl_controller != "fixed"
    reference = (AutoModelForCausalLM.from_pretrained(initial_dir, dtype=dtype).to(device).eval().requires_grad_(False)
                 if use_reference else None)
    from_rm = cfg.reward.source == "reward_model" and cfg.reward.reward_model
    critic_dir = cfg.critic or (cfg.reward.reward_model if from_rm else str(initial_dir))
    critic = load_scalar_model(critic_dir, cfg.model.dtype, device).train()
    optimizer = build_optimizer(policy, cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.betas)
    scheduler = build_scheduler(optimizer, cfg.optim.schedule, cfg.steps, cfg.optim.warmup_steps)
    c_opt = cfg.critic_optim
    critic_optimizer = build_optimizer(critic, c_opt.lr, c_opt.weight_decay, c_opt.betas)
    critic_scheduler = build_scheduler(critic_optimizer, c_opt.schedule, cfg.steps, c_opt.warmup_steps)
    # vllm: from the initial weights, synced after each update; hf: shares the policy object (no sync)
    engine = build_engine(r, initial_dir, policy, tokenizer, cfg.seed)
    loss_fn = GRPOLoss(LossSettings(eps_low=a.clip_eps, eps_high=a.clip_eps, beta=0.0, aggregation="token",
                                    is_level=a.is_level, is_cap=a.is_cap))
    kl_ctl = KL_CONTROLLERS[a.kl_controller](a.kl_coef, a.kl_target, a.kl_horizon)
    problems = load_problems(cfg)
    S = r.samples_per_prompt
    clip = lambda c: c if c > 0 else float("inf")  # noqa: E731 - grad_clip 0 means off

    history: list[float] = []
    metrics: dict[str, Any] = {}
    state = RecipeState(0, 0)
    with _verifier(cfg) as client, open(out / "metrics.jsonl", "a") as log, open(out / "samples.jsonl", "a") as samples:
        for step in range(cfg.steps):
            times: dict[str, float] = {}
            t0 = time.monotonic()

            # 1. sample
            batch = [problems[i] for i in batch_order(len(problems), cfg.data.seed, state.data_position,
                                                      r.prompts_per_step)]
            prompts = [format_prompt(p, cfg.data.prompt_style or None, tokenizer=tokenizer, chat=cfg.data.chat)
                       for p in batch]
            sampling = SamplingConfig(max_tokens=r.max_tokens, temperature=r.temperature,
                                      seed=(cfg.seed * 1_000_003 + step) * 1_000_033)
            groups = engine.generate(prompts, S, sampling)
            completions = [c for g in groups for c in g.completions]
            times["generate"] = time.monotonic() - t0
            engine.sleep()  # GPU vLLM with rollout.vllm_sleep: its memory freed until the sync

            # 2. one score per completion: the verifier's checks or the reward model
            t = time.monotonic()
            scored = _score(cfg, client, [p for p in batch for _ in range(S)], [p for p in prompts for _ in range(S)],
                            [c.text for c in completions])
            times["reward"] = time.monotonic() - t

            # 3. old log-probs, reference log-probs, values: [K, T] over the K kept rows
            t = time.monotonic()
            rollouts = collate(groups, tokenizer.pad_token_id)
            kept = torch.tensor(scored["valid"]).nonzero().squeeze(-1)
            K = len(kept)
            rows = rollouts.rows(kept).to(device)
            scores = torch.tensor(scored["scores"])[kept].to(device)                  # [K]
            old_logp, entropy = no_grad_logprobs(policy, rows, r.temperature, a.micro_batch_size)
            ref_logp = (no_grad_logprobs(reference, rows, r.temperature, a.micro_batch_size)[0]
                        if reference is not None else None)
            with torch.no_grad():
                old_values = torch.zeros_like(rows.mask)                              # [K, T]
                for micro in torch.arange(K, device=rows.mask.device).split(a.micro_batch_size):
                    old_values[micro] = critic_values(critic, rows.rows(micro))

            # 4. per-token rewards (KL penalty + score at the end), GAE, whitening
            rewards, seq_kl = token_rewards(scores, old_logp, ref_logp, rows.mask, kl_ctl.value)
            advantages, returns = gae(rewards, old_values, rows.mask, a.gamma, a.lam)
            if a.whiten_advantages and K:
                advantages = whiten(advantages, rows.mask)
            times["prepare"] = time.monotonic() - t

            # 5. updates: ppo_epochs x mini_batches, policy and critic each one optimizer step per part
            t = time.monotonic()
            sums: dict[str, float] = {}
            policy_losses, value_losses, grad_norms, value_clipped = [], [], [], 0.0
            for epoch in range(a.ppo_epochs if K else 0):
                perm = torch.randperm(K, generator=torch.Generator().manual_seed(cfg.seed + 7919 * step + epoch))
                for part in torch.tensor_split(perm, min(a.mini_batches, K)):
                    part = part.to(rows.mask.device)
                    scale = BatchScale(tokens=float(rows.mask[part].sum()), sequences=float(len(part)),
                                       max_tokens=r.max_tokens)
                    optimizer.zero_grad(set_to_none=True)
                    policy_losses.append(accumulate_gradients(policy, loss_fn, rows, old_logp, None, advantages, part,
                                                              a.micro_batch_size, scale, r.temperature, sums))
                    norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), clip(cfg.optim.grad_clip))
                    grad_norms.append(float(norm))
                    optimizer.step()

                    critic_optimizer.zero_grad(set_to_none=True)
                    total = 0.0
                    for micro in part.split(a.micro_batch_size):
                        mb = rows.rows(micro)
                        per_token, clipped = clipped_value_loss(critic_values(critic, mb), old_values[micro],
                                                                returns[micro], a.value_clip)
                        loss = (per_token * mb.mask).sum() / max(scale.tokens, 1.0)
                        loss.backward()
                        total += float(loss.detach())
                        value_clipped += float((clipped * mb.mask).sum())
                    torch.nn.utils.clip_grad_norm_(critic.parameters(), clip(c_opt.grad_clip))
                    critic_optimizer.step()
                    value_losses.append(total)
            scheduler.step()
            critic_scheduler.step()
            kl_mean = _mean(seq_kl)
            kl_coef_used = kl_ctl.value
            if K:
                kl_ctl.update(kl_mean, K)
            times["update"] = time.monotonic() - t
            engine.sync_weights(policy)
            state = RecipeState(step + 1, state.data_position + r.prompts_per_step)

            # 6. metrics and samples
            tokens_seen = float(rows.mask.sum()) * a.ppo_epochs
            history.append(_mean(scores))
            metrics = {
                "step": step + 1, "lr": scheduler.get_last_lr()[0], "reward_mean": history[-1],
                "statuses": scored["statuses"], "kept": K, "completions": len(completions),
                "kl": kl_mean, "kl_coef": kl_coef_used, "non_score_reward": _mean((-kl_coef_used * seq_kl)),
                "policy_loss": sum(policy_losses) / len(policy_losses) if policy_losses else float("nan"),
                "value_loss": sum(value_losses) / len(value_losses) if value_losses else float("nan"),
                "value_clip_fraction": value_clipped / max(tokens_seen, 1.0),
                **{k: v / max(tokens_seen, 1.0) for k, v in sums.items()},
                "grad_norm": sum(grad_norms) / len(grad_norms) if grad_norms else float("nan"),
                "value_mean": float((old_values * rows.mask).sum() / rows.mask.sum().clamp(min=1)),
                "return_mean": float((returns * rows.mask).sum() / rows.mask.sum().clamp(min=1)),
                "entropy": float((entropy * rows.mask).sum() / rows.mask.sum().clamp(min=1)),
                "completion_length": _mean(rollouts.mask.sum(-1)), "truncated_fraction": _mean(rollouts.truncated),
                "seconds": {k: round(v, 4) for k, v in times.items()},
            }
            log.write(json.dumps({k: None if isinstance(v, float) and v != v else v  # NaN (nothing kept): null
                                  for k, v in metrics.items()}) + "\n")
            log.flush()
            for i in range(min(cfg.log_samples, len(completions))):
                samples.write(json.dumps({"step": step + 1, "prompt": prompts[i // S],
                                          "completion": completions[i].text, "score": scored["scores"][i]}) + "\n")
    final = out / "final"
    if final.exists():  # a rerun into the same out_dir replaces its result
        shutil.rmtree(final)
    save_checkpoint(final, policy, tokenizer, optimizer, scheduler, state)
    critic.save_pretrained(final / "critic", safe_serialization=True)
    tokenizer.save_pretrained(final / "critic")
    return {**metrics, "reward_history": history, "model_dir": str(final / "model")}
