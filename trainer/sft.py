"""Supervised fine-tuning on completions: the recipe, top to bottom.

    verirl train sft --config configs/sft_demo.yaml [key=value ...]    # or: python -m trainer.cli sft ...

Data: prompt/completion records, chat records (`{"messages": [...]}`: the last message is the assistant
reply trained on, the ones before it are the prompt, rendered with the tokenizer's chat template), or the
synthetic task family (`tasks.synthetic.generate` problems with their reference solutions), so the demo
warms up without any file. Each step: take `batch_size` rows of an endless stream of per-epoch shuffles,
sum the negative log-likelihood of the completion tokens micro-batch by micro-batch, divide by the
batch's number of completion tokens, clip, step, log. Every `eval.every` steps: the same loss on the
held-out split, and (synthetic) greedy accuracy on held-out problems. The result is `<out_dir>/final/model`
(weights + tokenizer), which GRPO loads as its policy and reference (`model.path`).

Choices, and what is not handled:
  * the prompt and the completion are tokenized apart and concatenated, so the boundary is exact and the
    prompt tokens are those the rollout engine sees at generation time (a BPE merge across the boundary
    would otherwise train on a split that generation never produces). Prompts must not be empty.
  * plain completions get the tokenizer's EOS appended (the model learns to stop); chat replies end with
    whatever the template puts after a reply (Qwen: <|im_end|>), trained on like the reply itself.
  * chat records: only the last assistant message is a target; earlier assistant turns are context.
  * packing (`data.pack`): examples are packed in order, greedily, into rows of at most `max_length`
    tokens. Position ids restart at every example and no attention mask is passed, so transformers
    (>= 4.56, via `find_packed_sequence_indices`) builds a block-causal mask: no token attends across
    examples (tested: a packed row gives the losses of its examples run alone). The first token of each
    example has no target, so nothing is predicted across a boundary either. Padding (right) is a
    segment of its own, attended by nothing real.
  * examples longer than `max_length` are dropped and counted (`dropped_examples`), not truncated: a cut
    completion would teach the model never to stop.
  * the LR schedule advances once per optimizer step (one SFT step).
"""

from __future__ import annotations

import json
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from tasks.types import Problem
from trainer.checkpoint import RecipeState, load_recipe_state, save_checkpoint, start_run, starting_model_dir
from trainer.grpo import batch_order
from trainer.optim import build_optimizer, build_scheduler
from trainer.sft_config import SFTConfig

__all__ = ["Example", "Segment", "Batch", "example_from_record", "synthetic_examples", "load_examples", "tokenize",
           "build_rows", "collate", "completion_nll", "evaluate_loss", "greedy_accuracy", "train", "IGNORE"]

IGNORE = -100  # label of tokens without a target (prompts, padding): torch's cross_entropy ignore_index
Segment = tuple[list[int], list[int]]  # (prompt ids, completion ids) of one example
Row = list[Segment]                    # one training sequence: one example, or several packed


# ---------------------------------------------------------------- data
@dataclass(frozen=True)
class Example:
    prompt: str
    completion: str
    add_eos: bool = True  # plain completions end with EOS; chat replies carry the template's turn end


def example_from_record(record: Mapping[str, Any], tokenizer: Any) -> Example:
    """A {"prompt", "completion"} or {"messages": [...]} record as an Example."""
    from tasks.prompts import render_chat
    if "messages" in record:
        messages = list(record["messages"])
        if not messages or messages[-1].get("role") != "assistant" or len(messages) < 2:
            raise ValueError("a chat record needs at least one message before a final assistant message")
        prompt = render_chat(tokenizer, messages[:-1], add_generation_prompt=True)
        full = render_chat(tokenizer, messages, add_generation_prompt=False)
        if not full.startswith(prompt):  # the template renders the last turn differently: no clean split
            raise ValueError("the chat template does not render the conversation as prompt + reply")
        return Example(prompt, full[len(prompt):], add_eos=not getattr(tokenizer, "chat_template", None))
    if "prompt" in record and "completion" in record:
        return Example(str(record["prompt"]), str(record["completion"]))
    raise ValueError(f"a record needs 'prompt' and 'completion', or 'messages'; got fields {sorted(record)}")


def synthetic_examples(problems: Sequence[Problem], cfg: SFTConfig, tokenizer: Any) -> list[Example]:
    """Prompts exactly as GRPO formats them (same style, same chat setting), reference solutions as targets;
    with `data.early_answer_fraction`, that share of the multi-step problems (picked by the data seed)
    gets a teacher's early answer instead: the first step, then its result as the final answer."""
    from tasks.prompts import format_prompt
    from tasks.synthetic import STEP_SEPARATOR, format_answer, reference_steps
    d = cfg.data
    rng = random.Random(f"early-answer:{d.seed}")

    def target(p: Problem) -> str:
        steps = reference_steps(p)
        if len(steps) > 2 and rng.random() < d.early_answer_fraction:  # steps end with the "####" line
            steps = [steps[0], format_answer(p.metadata["values"][1], p.metadata.get("answer_style", "hashes"))]
        return STEP_SEPARATOR.join(steps)

    return [Example(format_prompt(p, d.prompt_style or None, tokenizer=tokenizer, chat=d.chat), target(p))
            for p in problems]


def _synthetic_problems(cfg: SFTConfig, n: int, split: str) -> list[Problem]:
    from tasks.synthetic import SyntheticConfig, generate
    d = cfg.data
    knobs = SyntheticConfig(min_steps=d.min_steps, max_steps=d.max_steps, max_value=d.max_value)
    return generate(n, split=split, seed=d.seed, config=knobs)


def load_examples(cfg: SFTConfig, tokenizer: Any) -> tuple[list[Example], list[Example], list[Problem]]:
    """(train, held-out) examples and the held-out problems for the accuracy check (synthetic only)."""
    d, e = cfg.data, cfg.eval
    if d.source == "synthetic":
        heldout = _synthetic_problems(cfg, max(e.examples, e.accuracy_problems), "heldout")
        return (synthetic_examples(_synthetic_problems(cfg, d.num_examples, "train"), cfg, tokenizer),
                synthetic_examples(heldout[:e.examples], cfg, tokenizer), heldout[:e.accuracy_problems])
    from tasks.files import read_jsonl
    train_set = [example_from_record(r, tokenizer) for r in read_jsonl(d.path)]
    if d.eval_path:
        return train_set, [example_from_record(r, tokenizer) for r in read_jsonl(d.eval_path)], []
    if len(train_set) <= e.examples:
        raise ValueError(f"{d.path}: {len(train_set)} records leave nothing to train on after holding out "
                         f"eval.examples={e.examples}; give data.eval_path or lower eval.examples")
    order = list(range(len(train_set)))
    random.Random(f"{d.seed}:heldout").shuffle(order)
    held = set(order[:e.examples])
    return ([x for i, x in enumerate(train_set) if i not in held], [train_set[i] for i in sorted(held)], [])


def tokenize(example: Example, tokenizer: Any) -> Segment:
    prompt = tokenizer(example.prompt, add_special_tokens=False).input_ids
    completion = tokenizer(example.completion, add_special_tokens=False).input_ids
    if not prompt or not completion:
        raise ValueError(f"empty prompt or completion: {example!r}")
    return prompt, completion + ([tokenizer.eos_token_id] if example.add_eos else [])


def build_rows(segments: Sequence[Segment], max_length: int, pack: bool) -> tuple[list[Row], int]:
    """Rows of at most `max_length` tokens (one example each, or packed greedily in order) and the
    number of examples dropped for being longer than `max_length`."""
    fitting = [s for s in segments if len(s[0]) + len(s[1]) <= max_length]
    rows: list[Row] = []
    used = max_length  # tokens in the last row: a full one forces a new row
    for seg in fitting:
        n = len(seg[0]) + len(seg[1])
        if pack and used + n <= max_length:
            rows[-1].append(seg)
            used += n
        else:
            rows.append([seg])
            used = n
    return rows, len(segments) - len(fitting)


# ---------------------------------------------------------------- tensors
@dataclass(frozen=True)
class Batch:
    """Rows right-padded to L columns. No attention mask: position ids restart at every example (and at
    the padding), which is what makes transformers keep attention within each example."""

    input_ids: torch.Tensor     # [B, L]
    labels: torch.Tensor        # [B, L] the token on completion tokens, IGNORE elsewhere (unshifted)
    position_ids: torch.Tensor  # [B, L]

    def to(self, device: str) -> Batch:
        return Batch(self.input_ids.to(device), self.labels.to(device), self.position_ids.to(device))


def collate(rows: Sequence[Row], pad_id: int) -> Batch:
    L = max(sum(len(p) + len(c) for p, c in row) for row in rows)
    ids = torch.full((len(rows), L), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), L), IGNORE, dtype=torch.long)
    positions = torch.zeros((len(rows), L), dtype=torch.long)
    for i, row in enumerate(rows):
        col = 0
        for prompt, completion in row:
            n = len(prompt) + len(completion)
            ids[i, col:col + n] = torch.tensor(prompt + completion)
            labels[i, col + len(prompt):col + n] = torch.tensor(completion)
            positions[i, col:col + n] = torch.arange(n)
            col += n
        positions[i, col:] = torch.arange(L - col)
    return Batch(ids, labels, positions)


def completion_nll(model: Any, batch: Batch) -> tuple[torch.Tensor, int]:
    """(sum of the completion tokens' negative log-likelihoods, number of completion tokens)."""
    logits = model(input_ids=batch.input_ids, position_ids=batch.position_ids, use_cache=False).logits
    targets = batch.labels[:, 1:]                                    # [B, L-1]: token t+1 is predicted at t
    nll = torch.nn.functional.cross_entropy(logits[:, :-1].float().flatten(0, 1), targets.flatten(),
                                            ignore_index=IGNORE, reduction="sum")
    return nll, int((targets != IGNORE).sum())


def _chunks(rows: Sequence[Row], size: int) -> list[Sequence[Row]]:
    return [rows[s:s + size] for s in range(0, len(rows), size)]


def evaluate_loss(model: Any, rows: Sequence[Row], pad_id: int, batch_size: int, device: str) -> float:
    """Mean negative log-likelihood per completion token over all `rows`."""
    total, tokens = 0.0, 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for part in _chunks(rows, batch_size):
            nll, n = completion_nll(model, collate(part, pad_id).to(device))
            total, tokens = total + float(nll), tokens + n
    model.train(was_training)
    return total / max(tokens, 1)


def greedy_accuracy(model: Any, tokenizer: Any, problems: Sequence[Problem], prompts: Sequence[str],
                    max_tokens: int) -> dict[str, float]:
    """Greedy completions of synthetic problems: `accuracy` (the "####"/boxed answer equals the gold) and
    `chain_accuracy` (every step right by `tasks.synthetic.check_steps`, nothing after the answer)."""
    from tasks.extract import extract_answers
    from tasks.synthetic import check_steps, split_solution
    from trainer.rollout import SamplingConfig
    from trainer.rollout.hf_engine import HFEngine
    groups = HFEngine(model, tokenizer).generate(prompts, 1, SamplingConfig(max_tokens=max_tokens, temperature=0.0))
    answers = chains = 0
    for problem, group in zip(problems, groups):
        text = group.completions[0].text
        found = extract_answers(text, ("GSM8K_HASHES", "BOXED_LAST"))
        answers += found is not None and found[1].strip() == problem.gold
        steps = split_solution(text)
        chains += len(steps) == len(problem.metadata["ops"]) + 1 and all(check_steps(problem, steps))
    n = max(len(problems), 1)
    return {"accuracy": answers / n, "chain_accuracy": chains / n}


# ---------------------------------------------------------------- the recipe
def train(cfg: SFTConfig, on_step: Callable[[int, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run SFT; returns the last step's metrics plus `eval_history` and `model_dir` (for GRPO's model.path).
    `on_step(step, metrics)` runs after each step's log line (a progress bar, say)."""
    out = start_run(cfg)
    device = cfg.model.device

    from transformers import AutoModelForCausalLM, AutoTokenizer
    if cfg.resume:
        model_dir = Path(cfg.resume) / "model"
    else:
        model_dir = starting_model_dir(cfg.model, out)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, cfg.model.dtype)).to(device).train()
    if cfg.model.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    optimizer = build_optimizer(model, cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.betas)
    scheduler = build_scheduler(optimizer, cfg.optim.schedule, cfg.steps, cfg.optim.warmup_steps)
    state = load_recipe_state(cfg.resume, optimizer, scheduler) if cfg.resume else RecipeState(0, 0)

    # data: token rows, built once; the order comes from (data.seed, position), so resume needs no more
    train_examples, eval_examples, accuracy_problems = load_examples(cfg, tokenizer)
    d, e = cfg.data, cfg.eval
    train_rows, dropped = build_rows([tokenize(x, tokenizer) for x in train_examples], d.max_length, d.pack)
    eval_rows, eval_dropped = build_rows([tokenize(x, tokenizer) for x in eval_examples], d.max_length, False)
    if not train_rows or not eval_rows:
        raise ValueError(f"no example fits data.max_length={d.max_length}")
    accuracy_prompts = [x.prompt for x in synthetic_examples(accuracy_problems, cfg, tokenizer)]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def evaluate() -> dict[str, float]:
        t = time.monotonic()
        result = {"eval_loss": evaluate_loss(model, eval_rows, pad_id, e.batch_size, device)}
        if accuracy_problems:
            result.update({f"eval_{k}": v for k, v in greedy_accuracy(model, tokenizer, accuracy_problems,
                                                                      accuracy_prompts, e.max_tokens).items()})
        return {**result, "eval_seconds": round(time.monotonic() - t, 3)}

    history: list[dict[str, Any]] = []
    metrics: dict[str, Any] = {}
    with open(out / "metrics.jsonl", "a") as log:
        if state.step == 0:  # the starting point, for before/after comparisons
            history.append({"step": 0, **evaluate(), "train_rows": len(train_rows), "dropped_examples": dropped,
                            "eval_rows": len(eval_rows), "eval_dropped_examples": eval_dropped})
            log.write(json.dumps(history[-1]) + "\n")
        for step in range(state.step, cfg.steps):
            t0 = time.monotonic()
            rows = [train_rows[i] for i in batch_order(len(train_rows), d.seed, state.data_position, cfg.batch_size)]
            micro = [collate(part, pad_id).to(device) for part in _chunks(rows, cfg.micro_batch_size)]
            tokens = sum(int((b.labels[:, 1:] != IGNORE).sum()) for b in micro)  # the whole batch's targets

            optimizer.zero_grad(set_to_none=True)
            total = 0.0
            for b in micro:  # gradient accumulation: each part's sum over the batch's token count
                nll, _ = completion_nll(model, b)
                (nll / tokens).backward()
                total += float(nll.detach())
            clip = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf")
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip))
            lr = scheduler.get_last_lr()[0]  # the LR this step used
            optimizer.step()
            scheduler.step()
            state = RecipeState(step=step + 1, data_position=state.data_position + cfg.batch_size)

            seconds = time.monotonic() - t0
            metrics = {"step": state.step, "lr": lr, "loss": total / tokens, "grad_norm": grad_norm,
                       "completion_tokens": tokens, "tokens": sum(int(b.input_ids.numel()) for b in micro),
                       "seconds": round(seconds, 4), "completion_tokens_per_s": tokens / max(seconds, 1e-9)}
            if (e.every and state.step % e.every == 0) or state.step == cfg.steps:
                metrics.update(evaluate())
                history.append({k: v for k, v in metrics.items() if k == "step" or k.startswith("eval_")})
            log.write(json.dumps(metrics) + "\n")
            log.flush()
            if on_step is not None:
                on_step(state.step, metrics)
            if cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0 and state.step < cfg.steps:
                save_checkpoint(out / f"checkpoint-{state.step}", model, tokenizer, optimizer, scheduler, state)
    final = out / "final"
    if final.exists():  # a rerun into the same out_dir replaces its result
        shutil.rmtree(final)
    save_checkpoint(final, model, tokenizer, optimizer, scheduler, state)
    return {**metrics, "eval_history": history, "model_dir": str(final / "model")}
