"""Step-level rejection sampling guided by a process reward model (PRM) served by the verifier.

A solution is grown one step at a time. For every open prefix the engine samples K candidate next
steps (each stops at the step separator); the verifier scores them (`client.score_candidates`: the
PRM's score of each candidate as the next step after the prefix). The best candidate is accepted if
its score clears `threshold`; otherwise K more are sampled, up to `max_resamples` times, and then the
best of all of them is taken anyway (counted as "forced"). A solution ends at the final answer (a step
containing `answer_marker`), at EOS, or after `max_steps` steps.

Two uses:
  * the sampler of GRPO's groups (`rollout.sampler=prm_steps`): `StepSampler.sample(problems, prompts,
    n)` returns `Group`s whose completions are the accepted steps' tokens and sampling log-probs, one
    after the other;
  * an offline generator of SFT data: `python -m trainer.step_sampler --model DIR --server HOST:PORT
    --out data.jsonl` writes {"prompt", "completion"} records of solutions that are verified (the
    math check says the final answer is right) and PRM-clean (every step cleared the threshold).

Where this departs from a plain policy sample: the accepted steps are not distributed as the policy's
samples (selection biases them toward the PRM's taste). In GRPO the per-token log-probs are still the
engine's sampling log-probs of the chosen tokens, so the capped importance weight sees the policy's
probability of each token but not the selection: the update is off-policy by the selection step.

Prompts go to the engine as text (prompt + accepted steps, each followed by the separator): with a
byte-level BPE tokenizer the re-tokenized prefix can differ from the concatenated step tokens at step
boundaries; the char-level tiny tokenizer has no such difference.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from tasks.types import Problem
from trainer.rollout import Completion, Group, SamplingConfig

__all__ = ["StepSamplerConfig", "StepSampler", "Trajectory", "write_sft_data", "main"]


@dataclass(frozen=True)
class StepSamplerConfig:
    candidates: int = 4            # K candidate next steps per prefix and round
    threshold: float = 0.5         # a candidate is accepted when its PRM score is >= this
    max_resamples: int = 2         # R: extra rounds of K when no candidate clears the threshold
    max_steps: int = 8             # a solution stops after this many steps
    max_step_tokens: int = 32      # tokens per candidate step (a step cut here is still a step)
    separator: str = "\n"          # the step separator the PRM was trained with
    answer_marker: str = "####"    # a step containing it is the final answer
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.candidates < 1 or self.max_resamples < 0 or self.max_steps < 1 or self.max_step_tokens < 1:
            raise ValueError("step_sampler: candidates, max_steps, max_step_tokens >= 1; max_resamples >= 0")
        if not self.separator:
            raise ValueError("step_sampler.separator must not be empty")


@dataclass
class Trajectory:
    """One solution being grown. `steps` are the accepted steps' texts (separator excluded)."""
    problem: Problem
    prompt: str
    steps: list[str] = field(default_factory=list)
    step_scores: list[float] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    text: str = ""                 # what the tokens decode to: steps with their separators
    forced: int = 0                # steps taken without clearing the threshold
    done: bool = False
    finish_reason: str = "length"  # "stop" at the answer or EOS, "length" at the step cap

    @property
    def clean(self) -> bool:
        """Every step cleared the PRM threshold."""
        return self.forced == 0 and bool(self.steps)

    def completion(self) -> Completion:
        return Completion(token_ids=tuple(self.token_ids), text=self.text, logprobs=tuple(self.logprobs),
                          finish_reason=self.finish_reason)


class StepSampler:
    def __init__(self, engine: Any, client: Any, cfg: StepSamplerConfig, eos_token_id: int, timeout_s: float = 120.0):
        self.engine, self.client, self.cfg = engine, client, cfg
        self.eos = eos_token_id
        self.timeout_s = timeout_s

    def run(self, problems: Sequence[Problem], prompts: Sequence[str]) -> tuple[list[Trajectory], Counter]:
        """Grow one trajectory per (problem, prompt). Stats: accepted_first (cleared the threshold in the
        first round), accepted_resampled, forced, rounds, candidates_sampled, candidates_scored, unjudged."""
        cfg = self.cfg
        trajs = [Trajectory(p, prompt) for p, prompt in zip(problems, prompts)]
        stats: Counter = Counter()
        sampling = SamplingConfig(max_tokens=cfg.max_step_tokens, temperature=cfg.temperature, stop=(cfg.separator,))
        for _ in range(cfg.max_steps):
            open_ = [t for t in trajs if not t.done]
            if not open_:
                break
            # per open trajectory: the best (score, candidate) seen so far this step
            best: dict[int, tuple[float, Completion]] = {}
            pending = list(range(len(open_)))
            for round_ in range(cfg.max_resamples + 1):
                if not pending:
                    break
                stats["rounds"] += 1
                groups = self.engine.generate([open_[i].prompt + open_[i].text for i in pending], cfg.candidates,
                                              sampling)
                stats["candidates_sampled"] += cfg.candidates * len(pending)
                scores = self._score([open_[i] for i in pending], groups, stats)
                still = []
                for i, group, cand_scores in zip(pending, groups, scores):
                    for c, score in zip(group.completions, cand_scores):
                        if i not in best or score > best[i][0]:
                            best[i] = (score, c)
                    if i in best and best[i][0] >= cfg.threshold:
                        stats["accepted_first" if round_ == 0 else "accepted_resampled"] += 1
                    else:
                        still.append(i)
                pending = still
            for i, traj in enumerate(open_):
                if i not in best:  # no candidate could be scored (all blank or unjudged): end here
                    traj.done, traj.finish_reason = True, "stop"
                    continue
                score, c = best[i]
                if score < cfg.threshold:
                    traj.forced += 1
                    stats["forced"] += 1
                self._append(traj, score, c)
        for t in trajs:
            if not t.done:
                t.finish_reason = "length"
        return trajs, stats

    def sample(self, problems: Sequence[Problem], prompts: Sequence[str], n: int) -> tuple[list[Group], Counter]:
        """GRPO's sampler: `n` trajectories per prompt, as groups."""
        trajs, stats = self.run([p for p in problems for _ in range(n)], [q for q in prompts for _ in range(n)])
        groups = [Group(prompt=prompts[b], prompt_ids=self._prompt_ids(prompts[b]),
                        completions=tuple(t.completion() for t in trajs[b * n:(b + 1) * n]))
                  for b in range(len(prompts))]
        return groups, stats

    def _prompt_ids(self, prompt: str) -> tuple[int, ...]:
        return tuple(self.engine.tokenizer(prompt, add_special_tokens=False)["input_ids"])

    def _score(self, trajs: list[Trajectory], groups: list[Group], stats: Counter) -> list[list[float]]:
        """PRM scores per candidate (-inf for blank candidates and unjudged items: never preferred)."""
        items, index = [], []
        for k, (t, g) in enumerate(zip(trajs, groups)):
            cands = [c.text.strip() for c in g.completions]
            keep = [j for j, c in enumerate(cands) if c]
            if keep:
                items.append({"id": str(k), "problem": t.problem.prompt, "prefix_steps": list(t.steps),
                              "candidates": [cands[j] for j in keep]})
                index.append((k, keep))
        out = [[float("-inf")] * len(g.completions) for g in groups]
        if not items:
            return out
        results = self.client.score_candidates(items, timeout=self.timeout_s)
        stats["candidates_scored"] += sum(len(it["candidates"]) for it in items)
        for (k, keep), r in zip(index, results):
            if not r.judged:
                stats["unjudged"] += 1
                continue
            for j, score in zip(keep, r.scores):
                out[k][j] = float(score)
        return out

    def _append(self, t: Trajectory, score: float, c: Completion) -> None:
        cfg = self.cfg
        stopped_at_eos = bool(c.token_ids) and c.token_ids[-1] == self.eos
        # The completion stopped at the separator when it did not end by EOS or by the token cap.
        at_separator = c.finish_reason == "stop" and not stopped_at_eos
        t.steps.append(c.text.strip())
        t.step_scores.append(score)
        t.token_ids.extend(c.token_ids)
        t.logprobs.extend(c.logprobs)
        t.text += c.text + (cfg.separator if at_separator else "")
        if stopped_at_eos or (cfg.answer_marker and cfg.answer_marker in c.text):
            t.done, t.finish_reason = True, "stop"


def write_sft_data(trajs: Sequence[Trajectory], client: Any, path: str | Path, timeout_s: float = 120.0) -> Counter:
    """Keep the verified (math check right) and PRM-clean trajectories; write them as SFT records.
    Returns counts: total, clean, verified, written."""
    counts: Counter = Counter(total=len(trajs))
    clean = [t for t in trajs if t.clean and t.finish_reason == "stop"]
    counts["clean"] = len(clean)
    results = client.check_math([{"id": str(i), "response": t.text, "gold": t.problem.gold}
                                 for i, t in enumerate(clean)], timeout=timeout_s) if clean else []
    with open(path, "w") as f:
        for t, r in zip(clean, results):
            if r.judged and r.correct:
                counts["verified"] += 1
                f.write(json.dumps({"prompt": t.prompt, "completion": t.text, "problem_id": t.problem.id,
                                    "step_scores": t.step_scores}) + "\n")
    counts["written"] = counts["verified"]
    return counts


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m trainer.step_sampler",
                                description="Write verified, PRM-clean step-by-step solutions as SFT data.")
    p.add_argument("--model", required=True, help="policy model directory (transformers format)")
    p.add_argument("--server", required=True, help="verifier address with a PRM loaded (verirl serve --prm DIR)")
    p.add_argument("--out", required=True, help="JSONL file of {prompt, completion} records")
    p.add_argument("--data", default="", help="Problem records (JSONL); default: the synthetic task")
    p.add_argument("--num-problems", type=int, default=64)
    p.add_argument("--samples", type=int, default=1, help="trajectories per problem")
    p.add_argument("--engine", choices=("hf", "vllm"), default="hf")
    p.add_argument("--prompt-style", default="bare")
    p.add_argument("--seed", type=int, default=0)
    for f in StepSamplerConfig.__dataclass_fields__.values():
        p.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch
    from tasks.files import read_jsonl
    from tasks.prompts import format_prompt
    from trainer.rollout import engine_class
    from verifier_service.client import VerifierClient

    torch.manual_seed(args.seed)
    if args.data:
        problems = [Problem.from_dict(r) for r in read_jsonl(args.data)][:args.num_problems]
    else:
        from tasks.synthetic import generate
        problems = generate(args.num_problems, split="train", seed=args.seed)
    cfg = StepSamplerConfig(**{k: getattr(args, k) for k in StepSamplerConfig.__dataclass_fields__})
    if args.engine == "vllm":
        engine = engine_class("vllm")(args.model, seed=args.seed)
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer
        engine = engine_class("hf")(AutoModelForCausalLM.from_pretrained(args.model),
                                    AutoTokenizer.from_pretrained(args.model))
    prompts = [format_prompt(p, args.prompt_style or None) for p in problems]
    with VerifierClient(args.server) as client:
        sampler = StepSampler(engine, client, cfg, engine.tokenizer.eos_token_id)
        trajs, stats = sampler.run([p for p in problems for _ in range(args.samples)],
                                   [q for q in prompts for _ in range(args.samples)])
        counts = write_sft_data(trajs, client, args.out)
    print(json.dumps({**counts, **stats}))
    return 0


if __name__ == "__main__":  # vLLM starts helpers with spawn
    sys.exit(main())
