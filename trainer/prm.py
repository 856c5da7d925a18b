"""Process reward model (PRM) training: the recipe, top to bottom.

    verirl train prm --config configs/prm_demo.yaml [key=value ...]    # or: python -m trainer.cli prm ...

Model (`format.kind`, picked once from `MODELS`), from the tiny model or any policy directory (e.g. SFT's
result). A chain is rendered by `tasks.prm_format.render_spans` (problem, then separator + step and the step
tag per step, piece by piece), exactly as `verirl serve --prm` renders it, and step j is scored at the last
token of its tag.
  * token_classification: a 2-label head (`correct_label` 1) on the causal backbone
    (`AutoModelForTokenClassification`); P(correct) is read from the head at the tag.
  * step_likelihood: a causal LM (`AutoModelForCausalLM`, its LM head kept) plus a linear head over
    `tasks.prm_format.likelihood_features` (the LM's negative log-likelihoods of step j's own tokens and
    tag, and their running maxima); P(correct) = sigmoid(head). Why: every corruption of the synthetic
    family is an equality between two places, which one label bit per step teaches a small model far too
    slowly (docs/benchmarks.md), while the same model learns to *write* right steps quickly; a wrong
    value is then a token the LM finds unlikely.
The tag loss is the soft-target cross-entropy at the tags: with label y in [0, 1] (hard 0/1 or soft),
-(y log p(correct) + (1 - y) log p(wrong)), summed over the batch's tags and divided by their number.
step_likelihood adds `likelihood.lm_weight` x the next-token loss (summed NLL of the own tokens and tags
of the steps labelled right, y >= 0.5, divided by their number in the batch); the problem text, the
separators and the wrong steps have no next-token target. With `likelihood.detach_features` (the
default) the tag loss trains the head alone and the LM learns only from the next-token loss: the LM stays
a model of right steps, and the tag loss cannot buy a lower loss by making the LM less sure of the right
tokens of wrong steps (the mean NLL feature covers every token of a step, not only the wrong one).

Data (`data.source`):
  * synthetic: `tasks.corruptions.step_chains` (reference chains and chains corrupted at a known step,
    exact prefix labels: right before the first error, wrong from it on);
  * jsonl: `{"prompt", "completions": [step, ...], "labels": [...]}` records (TRL's stepwise format);
  * math_shepherd: chains sampled by a policy through the rollout engine, labelled by `math_shepherd_records`
    (below) and written to `<out_dir>/math_shepherd.jsonl` (reusable with data.source=jsonl).

Math-Shepherd labels (Wang et al. 2024): from the prefix ending at each step, the policy writes N
completions; each full solution is checked against the gold by the verifier service (`check_math`,
through the client, a real gRPC call). hard = 1 if any completion reaches the gold, soft = the share that
does. Departures: the last step of a chain that stopped by itself is labelled by checking the chain
itself (a completion after the answer line has nothing to add); rollouts the service could not judge are
left out of the share, and a step with none judged drops its chain (counted).

Evaluation: first-error detection as ProcessBench measures it. The predicted first error is the first step
with P(correct) < `eval.threshold` (-1: none); accuracy on erroneous chains (prediction == label) and on
correct chains (prediction == -1), F1 their harmonic mean. Synthetic and Math-Shepherd runs evaluate on
held-out synthetic chains with exact labels; jsonl runs on `data.eval_path` or held-out records, whose
first error is the first label below 0.5.

Truncation (`data.truncation`): a chain longer than `data.max_length` tokens is an error naming the record,
or with an explicit choice is dropped whole, or keeps only the steps whose tags fit; what was left out is
counted in metrics.jsonl's first line and printed. Never a silent cut.
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import torch

from tasks.prm_format import (HEAD_FILE, STEP_FEATURES, PRMFormat, likelihood_features, load_head, render_spans,
                              save_head)
from tasks.types import Problem
from trainer.checkpoint import RecipeState, load_recipe_state, save_checkpoint, start_run, starting_model_dir
from trainer.grpo import batch_order
from trainer.optim import build_optimizer, build_scheduler
from trainer.prm_config import PRMConfig, ShepherdConfig

__all__ = ["Encoded", "Batch", "StepLikelihoodPRM", "MODELS", "prm_format", "prm_losses", "check_record", "encode", "encode_all", "collate", "tag_loss",
           "step_probabilities", "predicted_first_error", "first_error_f1", "math_shepherd_records",
           "evaluate", "train", "NO_TARGET", "CORRECT_LABEL"]

NO_TARGET = -1.0   # target of tokens without a label (everything but the tags)
CORRECT_LABEL = 1  # the class index meaning "this step is right" (PRMFormat.correct_label)


# ---------------------------------------------------------------- data
def prm_format(cfg: PRMConfig) -> PRMFormat:
    f = cfg.format
    return PRMFormat(kind=f.kind, step_tag=f.step_tag, step_separator=f.step_separator,
                     correct_label=CORRECT_LABEL, default_aggregation=f.default_aggregation,
                     max_length=cfg.data.max_length)


@dataclass(frozen=True)
class Encoded:
    """One chain as the PRM reads it."""

    ids: list[int]          # rendered by tasks.prm_format.render_spans
    tags: list[int]         # positions of the step scores, one per kept step
    labels: list[float]     # P(step correct) targets in [0, 1], one per kept step
    first_error: int        # first label below 0.5, -1 if none (the evaluation's truth)
    spans: list[tuple[int, int, int]]  # (start, tag_start, tag) per kept step: render_spans


def check_record(record: Mapping[str, Any], where: str) -> tuple[str, list[str], list[float]]:
    """(prompt, steps, labels) of a {"prompt", "completions", "labels"} record; bad records name the field."""
    for key in ("prompt", "completions", "labels"):
        if key not in record:
            raise ValueError(f"{where}: missing field {key!r} (fields: {sorted(record)})")
    steps, labels = record["completions"], record["labels"]
    if not isinstance(record["prompt"], str) or not isinstance(steps, list) or \
            not all(isinstance(s, str) for s in steps):
        raise ValueError(f"{where}: 'prompt' must be a string and 'completions' a list of strings")
    if not isinstance(labels, list) or len(labels) != len(steps) or not steps:
        raise ValueError(f"{where}: 'labels' must be a list with one label per step "
                         f"({len(steps)} steps, labels {labels!r})")
    values = []
    for x in labels:
        if not isinstance(x, (bool, int, float)) or not 0.0 <= float(x) <= 1.0:
            raise ValueError(f"{where}: 'labels' must be booleans or numbers in [0, 1], got {x!r}")
        values.append(float(x))
    return record["prompt"], list(steps), values


def encode(record: Mapping[str, Any], tokenizer: Any, fmt: PRMFormat, truncation: str,
           where: str = "record") -> tuple[Encoded | None, int]:
    """(the encoded chain or None when dropped, number of step labels left out by truncation)."""
    prompt, steps, labels = check_record(record, where)
    ids, spans = render_spans(tokenizer, fmt, prompt, steps)
    tags = [tag for _, _, tag in spans]
    if len(ids) > fmt.max_length:
        if truncation == "error":
            raise ValueError(f"{where}: {len(ids)} tokens > data.max_length={fmt.max_length}; raise it, or set "
                             f"data.truncation to drop_example or keep_prefix")
        kept = sum(t < fmt.max_length for t in tags) if truncation == "keep_prefix" else 0
        if kept == 0:
            return None, len(labels)
        ids, tags, labels, spans = ids[:tags[kept - 1] + 1], tags[:kept], labels[:kept], spans[:kept]
        dropped = len(steps) - kept
    else:
        dropped = 0
    first = next((i for i, y in enumerate(labels) if y < 0.5), -1)
    return Encoded(ids, tags, labels, first, spans), dropped


def encode_all(records: Sequence[Mapping[str, Any]], tokenizer: Any, fmt: PRMFormat, truncation: str,
               name: str) -> tuple[list[Encoded], dict[str, int]]:
    """Encoded chains and what truncation left out: {"<name>_dropped_examples", "<name>_dropped_labels"}."""
    out, examples, labels = [], 0, 0
    for i, record in enumerate(records):
        enc, lost = encode(record, tokenizer, fmt, truncation, where=f"{name} record {i}")
        if enc is None:
            examples += 1
        else:
            out.append(enc)
        labels += lost
    if examples or labels:  # an explicit choice, and said out loud
        print(f"prm: {name}: data.truncation={truncation} left out {examples} chains and {labels} step labels "
              f"longer than data.max_length={fmt.max_length}", file=sys.stderr)
    return out, {f"{name}_dropped_examples": examples, f"{name}_dropped_labels": labels}


def _synthetic_problems(cfg: PRMConfig, n: int, split: str) -> list[Problem]:
    from tasks.synthetic import SyntheticConfig, generate
    d = cfg.data
    knobs = SyntheticConfig(min_steps=d.min_steps, max_steps=d.max_steps, max_value=d.max_value)
    return generate(n, split=split, seed=d.seed, config=knobs)


def _synthetic_records(problems: Sequence[Problem], cfg: PRMConfig) -> list[dict[str, Any]]:
    from tasks.corruptions import step_chains
    from tasks.stepdata import to_trl
    d = cfg.data
    return [to_trl(c) for c in step_chains(problems, seed=d.seed, error_fraction=d.error_fraction, kinds=d.error_kinds)]


# ---------------------------------------------------------------- Math-Shepherd labels
def _shepherd_response(steps: Sequence[str], completion: str, separator: str) -> str:
    """The solution a rollout from the prefix `steps` amounts to: what the verifier checks."""
    return separator.join(steps) + separator + completion


def math_shepherd_records(engine: Any, client: Any, problems: Sequence[Problem], cfg: ShepherdConfig,
                          seed: int) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Sample `chains_per_problem` chains per problem with the policy (`engine`), then from the prefix
    ending at each step `rollouts` completions; every completed solution is checked against the gold
    through `client.check_math` (a VerifierClient). Returns records
    {"id", "prompt", "completions", "labels", "hard_labels", "soft_labels", "exact_labels", "gold"}
    ("labels" is the `cfg.labels` kind; "exact_labels" the synthetic family's prefix truth, to measure
    the labels) and counts (chains sampled, kept, dropped for having no step or no judged rollout)."""
    from tasks.prompts import format_prompt
    from tasks.synthetic import STEP_SEPARATOR, chain_from_steps, split_solution
    from trainer.rollout import SamplingConfig
    sep = STEP_SEPARATOR
    sampling = SamplingConfig(max_tokens=cfg.max_tokens, temperature=cfg.temperature, seed=seed)
    prompts = [format_prompt(p, cfg.prompt_style) for p in problems]
    groups = engine.generate(prompts, cfg.chains_per_problem, sampling)

    # every (chain, step) prefix that needs rollouts: the last step of a finished chain does not
    chains: list[tuple[int, list[str], bool]] = []  # (problem index, steps, stopped by itself)
    prefixes: list[tuple[int, int]] = []            # (chain index, step index)
    for k, group in enumerate(groups):
        for c in group.completions:
            steps = split_solution(c.text)
            if not steps:
                continue
            chains.append((k, steps, not c.truncated))
            prefixes += [(len(chains) - 1, j) for j in range(len(steps) - (0 if c.truncated else 1))]
    prefix_prompts = [prompts[chains[i][0]] + sep.join(chains[i][1][:j + 1]) + sep for i, j in prefixes]
    rollouts = engine.generate(prefix_prompts, cfg.rollouts,
                               SamplingConfig(max_tokens=cfg.max_tokens, temperature=cfg.temperature,
                                              seed=seed + 1)) if prefixes else []

    # one verifier batch: every rollout's solution, and every finished chain as it stands
    items, owner = [], []  # owner[k]: (chain index, step index) that item k labels
    for (i, j), group in zip(prefixes, rollouts):
        problem, steps = problems[chains[i][0]], chains[i][1]
        for c in group.completions:
            items.append({"id": str(len(items)), "response": _shepherd_response(steps[:j + 1], c.text, sep),
                          "gold": problem.gold})
            owner.append((i, j))
    for i, (k, steps, stopped) in enumerate(chains):
        if stopped:
            items.append({"id": str(len(items)), "response": sep.join(steps), "gold": problems[k].gold})
            owner.append((i, len(steps) - 1))
    results = client.check_math(items, timeout=cfg.timeout_s) if items else []

    reached: dict[tuple[int, int], list[bool]] = {}  # (chain, step) -> verdicts of its judged rollouts
    for key, result in zip(owner, results):
        if result.judged:
            reached.setdefault(key, []).append(result.correct)
    records, unjudged = [], 0
    for i, (k, steps, _) in enumerate(chains):
        problem = problems[k]
        verdicts = [reached.get((i, j), []) for j in range(len(steps))]
        if not all(verdicts):
            unjudged += 1
            continue
        soft = [sum(v) / len(v) for v in verdicts]
        hard = [float(any(v)) for v in verdicts]
        records.append({"id": f"{problem.id}-c{i}", "prompt": problem.prompt, "completions": steps,
                        "labels": hard if cfg.labels == "hard" else soft, "hard_labels": hard, "soft_labels": soft,
                        "exact_labels": [float(x) for x in chain_from_steps(problem, steps).labels()],
                        "gold": problem.gold})
    counts = {"shepherd_chains": len(chains), "shepherd_records": len(records),
              "shepherd_empty_chains": sum(len(g.completions) for g in groups) - len(chains),
              "shepherd_unjudged_chains": unjudged, "shepherd_rollouts": len(items)}
    return records, counts


@contextlib.contextmanager
def _verifier(cfg: ShepherdConfig) -> Iterator[Any]:
    """A client of the configured service; with no address, a server started for the labelling."""
    from verifier_service.client import VerifierClient
    if cfg.address:
        with VerifierClient(cfg.address, timeout=cfg.timeout_s) as client:
            yield client
        return
    from verifier_service.config import ServerConfig
    from verifier_service.server import embedded_server
    with embedded_server(ServerConfig(math_workers=cfg.server_math_workers, sandbox="off")) as address:
        with VerifierClient(address, timeout=cfg.timeout_s) as client:
            yield client


def _shepherd_engine(cfg: PRMConfig) -> Any:
    from trainer.rollout import engine_class
    s = cfg.shepherd
    if s.engine == "vllm":
        return engine_class("vllm")(s.policy, seed=cfg.seed)
    from transformers import AutoModelForCausalLM, AutoTokenizer
    policy = AutoModelForCausalLM.from_pretrained(s.policy, dtype=getattr(torch, cfg.model.dtype))
    return engine_class("hf")(policy.to(cfg.model.device), AutoTokenizer.from_pretrained(s.policy))


def load_records(cfg: PRMConfig, out: Path) -> tuple[list[dict], list[dict], dict[str, int]]:
    """(training records, held-out records, counts worth logging)."""
    d, e = cfg.data, cfg.eval
    if d.source == "jsonl":
        from tasks.files import read_jsonl
        records = list(read_jsonl(d.path))
        if d.eval_path:
            return records, list(read_jsonl(d.eval_path)), {}
        if len(records) <= e.examples:
            raise ValueError(f"{d.path}: {len(records)} records leave nothing to train on after holding out "
                             f"eval.examples={e.examples}; give data.eval_path or lower eval.examples")
        order = list(range(len(records)))
        random.Random(f"{d.seed}:heldout").shuffle(order)
        held = set(order[:e.examples])
        return ([r for i, r in enumerate(records) if i not in held], [records[i] for i in sorted(held)], {})
    heldout = _synthetic_records(_synthetic_problems(cfg, e.examples, "heldout"), cfg)
    if d.source == "synthetic":
        return _synthetic_records(_synthetic_problems(cfg, d.num_problems, "train"), cfg), heldout, {}
    from tasks.files import write_jsonl
    with _verifier(cfg.shepherd) as client:
        problems = _synthetic_problems(cfg, cfg.shepherd.num_problems, "train")
        records, counts = math_shepherd_records(_shepherd_engine(cfg), client, problems, cfg.shepherd, cfg.seed)
    write_jsonl(records, out / "math_shepherd.jsonl")
    if not records:
        raise ValueError(f"Math-Shepherd labelling kept no chain: {counts}")
    return records, heldout, counts


# ---------------------------------------------------------------- tensors
@dataclass(frozen=True)
class Batch:
    """Chains right-padded to L columns (causal attention: padding after a chain never reaches it)."""

    input_ids: torch.Tensor       # [B, L]
    attention_mask: torch.Tensor  # [B, L] 1 on chain tokens
    targets: torch.Tensor         # [B, L] float: P(correct) label at the tags, NO_TARGET elsewhere
    lm_mask: torch.Tensor         # [B, L] bool: next-token targets (own tokens and tag of the right steps)
    spans: tuple                  # per row, its chain's Encoded.spans

    def to(self, device: str) -> Batch:
        return Batch(self.input_ids.to(device), self.attention_mask.to(device), self.targets.to(device),
                     self.lm_mask.to(device), self.spans)


def collate(chains: Sequence[Encoded], pad_id: int) -> Batch:
    L = max(len(c.ids) for c in chains)
    ids = torch.full((len(chains), L), pad_id, dtype=torch.long)
    mask = torch.zeros((len(chains), L), dtype=torch.long)
    targets = torch.full((len(chains), L), NO_TARGET, dtype=torch.float32)
    lm_mask = torch.zeros((len(chains), L), dtype=torch.bool)
    for i, c in enumerate(chains):
        ids[i, :len(c.ids)] = torch.tensor(c.ids)
        mask[i, :len(c.ids)] = 1
        targets[i, c.tags] = torch.tensor(c.labels, dtype=torch.float32)
        for (start, _, tag), y in zip(c.spans, c.labels):
            if y >= 0.5:
                lm_mask[i, start:tag + 1] = True
    return Batch(ids, mask, targets, lm_mask, tuple(c.spans for c in chains))


class StepLikelihoodPRM(torch.nn.Module):
    """A causal LM and a linear head over the likelihood features of each step (format.kind step_likelihood).

    Saved as the LM's Hugging Face directory plus HEAD_FILE (tasks.prm_format.save_head): what the service
    loads. `detach`: the tag loss's gradient stops at the features (likelihood.detach_features)."""

    def __init__(self, lm: Any, head: torch.nn.Linear, detach: bool) -> None:
        super().__init__()
        self.lm, self.head, self.detach = lm, head, detach

    @classmethod
    def from_pretrained(cls, directory: str | Path, dtype: torch.dtype, detach: bool) -> StepLikelihoodPRM:
        """The LM of `directory`; its head from HEAD_FILE if there is one (a checkpoint), else zeros
        (P(correct) 0.5 everywhere until the tag loss moves it)."""
        from transformers import AutoModelForCausalLM
        head = torch.nn.Linear(len(STEP_FEATURES), 1)
        with torch.no_grad():
            if (Path(directory) / HEAD_FILE).is_file():
                weight, bias = load_head(directory)
                head.weight.copy_(torch.tensor([weight]))
                head.bias.fill_(bias)
            else:
                head.weight.zero_()
                head.bias.zero_()
        return cls(AutoModelForCausalLM.from_pretrained(directory, dtype=dtype), head, detach)  # the head: fp32

    @property
    def config(self) -> Any:
        return self.lm.config

    def gradient_checkpointing_enable(self) -> None:
        self.lm.gradient_checkpointing_enable()

    def save_pretrained(self, directory: str | Path, **kwargs: Any) -> None:
        self.lm.save_pretrained(directory, **kwargs)
        save_head(directory, self.head.weight[0].tolist(), self.head.bias.item())

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                spans: Sequence[Sequence[tuple[int, int, int]]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(head logits [N], one per step of every row in order; token NLLs [B, L]: token_nll[:, t] =
        -log p(ids[:, t] | ids[:, :t]), 0 at t = 0)."""
        logits = self.lm(input_ids=input_ids, attention_mask=attention_mask).logits.float()     # [B, L, V]
        nll = -logits[:, :-1].log_softmax(-1).gather(-1, input_ids[:, 1:, None])[..., 0]   # [B, L-1]
        token_nll = torch.nn.functional.pad(nll, (1, 0))                                     # [B, L]
        features = likelihood_features(token_nll.detach() if self.detach else token_nll, spans)  # [N, 6]
        return self.head(features)[:, 0].float(), token_nll


def _tag_log_probs(model: Any, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(log P(wrong), log P(correct)) at every tag, [n_tags, 2] in the order of batch.targets[tags], and
    the token NLLs [B, L] of a step_likelihood model (None for token classification)."""
    if isinstance(model, StepLikelihoodPRM):
        z, token_nll = model(batch.input_ids, batch.attention_mask, batch.spans)           # [N]
        logsig = torch.nn.functional.logsigmoid
        return torch.stack([logsig(-z), logsig(z)], dim=-1), token_nll                     # CORRECT_LABEL = 1
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits  # [B, L, 2]
    return logits.float().log_softmax(-1)[batch.targets != NO_TARGET], None


def prm_losses(model: Any, batch: Batch) -> tuple[torch.Tensor, int, torch.Tensor, int]:
    """(tag loss summed over tags, number of tags, next-token loss summed over the lm_mask tokens (0 without
    an LM), their number)."""
    picked, token_nll = _tag_log_probs(model, batch)                  # [n_tags, 2]
    y = batch.targets[batch.targets != NO_TARGET]                     # [n_tags]
    loss = -(y * picked[:, CORRECT_LABEL] + (1 - y) * picked[:, 1 - CORRECT_LABEL]).sum()
    if token_nll is None:
        return loss, len(y), torch.zeros((), device=loss.device), 0
    return loss, len(y), token_nll[batch.lm_mask].sum(), int(batch.lm_mask.sum())


def tag_loss(model: Any, batch: Batch) -> tuple[torch.Tensor, int]:
    """(sum over tags of -(y log p(correct) + (1-y) log p(wrong)), number of tags)."""
    loss, n, _, _ = prm_losses(model, batch)
    return loss, n


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[s:s + size] for s in range(0, len(items), size)]


def step_probabilities(model: Any, chains: Sequence[Encoded], pad_id: int, batch_size: int,
                       device: str) -> tuple[list[list[float]], float]:
    """(P(correct) at every tag of every chain, mean tag loss over all chains)."""
    probs: list[list[float]] = []
    total, tags = 0.0, 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for part in _chunks(chains, batch_size):
            batch = collate(part, pad_id).to(device)
            picked, _ = _tag_log_probs(model, batch)                   # [n_tags, 2]
            p = picked[:, CORRECT_LABEL].exp().cpu().tolist()          # [n_tags], chain by chain
            for c in part:
                probs.append(p[:len(c.tags)])
                p = p[len(c.tags):]
            y = batch.targets[batch.targets != NO_TARGET]
            loss = -(y * picked[:, CORRECT_LABEL] + (1 - y) * picked[:, 1 - CORRECT_LABEL]).sum()
            total, tags = total + float(loss), tags + len(y)
    model.train(was_training)
    return probs, total / max(tags, 1)


def predicted_first_error(probs: Sequence[float], threshold: float) -> int:
    """The first step with P(correct) below `threshold`; -1 if none."""
    return next((i for i, p in enumerate(probs) if p < threshold), -1)


def first_error_f1(predicted: Sequence[int], labelled: Sequence[int]) -> dict[str, float]:
    """ProcessBench's score: accuracy on erroneous chains (the exact first error found), on correct chains
    (no error predicted), F1 their harmonic mean (0 when either set is empty or either accuracy is 0)."""
    err = [p == t for p, t in zip(predicted, labelled) if t != -1]
    ok = [p == -1 for p, t in zip(predicted, labelled) if t == -1]
    a_err = sum(err) / len(err) if err else 0.0
    a_ok = sum(ok) / len(ok) if ok else 0.0
    f1 = 2 * a_err * a_ok / (a_err + a_ok) if a_err + a_ok else 0.0
    return {"acc_erroneous": a_err, "acc_correct": a_ok, "f1": f1,
            "erroneous_chains": len(err), "correct_chains": len(ok)}


def evaluate(model: Any, chains: Sequence[Encoded], pad_id: int, batch_size: int, device: str,
             threshold: float) -> dict[str, float]:
    """First-error F1 and its parts, the tag loss, and step accuracy (hard steps: P >= threshold vs label)."""
    probs, loss = step_probabilities(model, chains, pad_id, batch_size, device)
    scores = first_error_f1([predicted_first_error(p, threshold) for p in probs], [c.first_error for c in chains])
    steps = [(p >= threshold) == (y >= 0.5) for ps, c in zip(probs, chains) for p, y in zip(ps, c.labels)]
    return {**scores, "loss": loss, "step_accuracy": sum(steps) / max(len(steps), 1)}


# ---------------------------------------------------------------- the recipe
def _token_classification(model_dir: Path, cfg: PRMConfig) -> Any:
    from transformers import AutoModelForTokenClassification
    labels = {1 - CORRECT_LABEL: "wrong", CORRECT_LABEL: "correct"}
    # a causal LM directory loads its backbone; the head (hidden -> 2) starts random
    return AutoModelForTokenClassification.from_pretrained(
        model_dir, num_labels=2, id2label=labels, label2id={v: k for k, v in labels.items()},
        dtype=getattr(torch, cfg.model.dtype))


def _step_likelihood(model_dir: Path, cfg: PRMConfig) -> Any:
    return StepLikelihoodPRM.from_pretrained(model_dir, getattr(torch, cfg.model.dtype),
                                             cfg.likelihood.detach_features)


MODELS = {"token_classification": _token_classification, "step_likelihood": _step_likelihood}


def _load_model(cfg: PRMConfig, out: Path) -> tuple[Any, Any]:
    from transformers import AutoTokenizer
    if cfg.resume:
        model_dir = Path(cfg.resume) / "model"
    else:
        model_dir = starting_model_dir(cfg.model, out, cfg.tiny)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = MODELS[cfg.format.kind](model_dir, cfg)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model.to(cfg.model.device).train(), tokenizer


def _optimizer(model: Any, cfg: PRMConfig) -> torch.optim.Optimizer:
    """AdamW (trainer.optim); a step_likelihood head is its own group at likelihood.head_lr: 7 numbers
    whose right values are a few units, which the model's lr would take most of the run to reach."""
    o = cfg.optim
    if not isinstance(model, StepLikelihoodPRM):
        return build_optimizer(model, o.lr, o.weight_decay, o.betas)
    optimizer = build_optimizer(model.lm, o.lr, o.weight_decay, o.betas)
    optimizer.add_param_group({"params": list(model.head.parameters()), "weight_decay": 0.0,
                               "lr": cfg.likelihood.head_lr})
    return optimizer


def train(cfg: PRMConfig) -> dict[str, Any]:
    """Train a PRM; returns the last step's metrics plus `eval_history` and `model_dir` (verirl serve --prm)."""
    out = start_run(cfg)
    device, d, e = cfg.model.device, cfg.data, cfg.eval
    fmt = prm_format(cfg)

    model, tokenizer = _load_model(cfg, out)
    if cfg.model.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    optimizer = _optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg.optim.schedule, cfg.steps, cfg.optim.warmup_steps)
    state = load_recipe_state(cfg.resume, optimizer, scheduler) if cfg.resume else RecipeState(0, 0)

    # data: encoded once; the order comes from (data.seed, position), so resume needs no more
    train_records, eval_records, counts = load_records(cfg, out)
    train_set, train_lost = encode_all(train_records, tokenizer, fmt, d.truncation, "train")
    eval_set, eval_lost = encode_all(eval_records, tokenizer, fmt, d.truncation, "eval")
    if not train_set or not eval_set:
        raise ValueError(f"no chain fits data.max_length={d.max_length}")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def run_eval() -> dict[str, Any]:
        t = time.monotonic()
        result = evaluate(model, eval_set, pad_id, e.batch_size, device, e.threshold)
        return {**{f"eval_{k}": v for k, v in result.items()}, "eval_seconds": round(time.monotonic() - t, 3)}

    history: list[dict[str, Any]] = []
    metrics: dict[str, Any] = {}
    with open(out / "metrics.jsonl", "a") as log:
        if state.step == 0:  # the starting point, and what the data lost (if anything)
            history.append({"step": 0, **run_eval(), "train_chains": len(train_set), "eval_chains": len(eval_set),
                            **train_lost, **eval_lost, **counts})
            log.write(json.dumps(history[-1]) + "\n")
        for step in range(state.step, cfg.steps):
            t0 = time.monotonic()
            chains = [train_set[i] for i in batch_order(len(train_set), d.seed, state.data_position, cfg.batch_size)]
            micro = [collate(part, pad_id).to(device) for part in _chunks(chains, cfg.micro_batch_size)]
            tags = sum(len(c.tags) for c in chains)  # the whole batch's targets
            lm_tokens = max(1, sum(int(b.lm_mask.sum()) for b in micro))

            optimizer.zero_grad(set_to_none=True)
            total, lm_total = 0.0, 0.0
            for b in micro:  # gradient accumulation: each part's sums over the batch's counts
                loss, _, lm_loss, _ = prm_losses(model, b)
                (loss / tags + cfg.likelihood.lm_weight * lm_loss / lm_tokens).backward()
                total += float(loss.detach())
                lm_total += float(lm_loss.detach())
            clip = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf")
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip))
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            state = RecipeState(step=step + 1, data_position=state.data_position + cfg.batch_size)

            seconds = time.monotonic() - t0
            metrics = {"step": state.step, "lr": lr, "loss": total / tags, "grad_norm": grad_norm, "tags": tags,
                       "tokens": sum(int(b.input_ids.numel()) for b in micro), "seconds": round(seconds, 4)}
            if isinstance(model, StepLikelihoodPRM):
                metrics["lm_loss"] = lm_total / lm_tokens
            if (e.every and state.step % e.every == 0) or state.step == cfg.steps:
                metrics.update(run_eval())
                history.append({k: v for k, v in metrics.items() if k == "step" or k.startswith("eval_")})
            log.write(json.dumps(metrics) + "\n")
            log.flush()
            if cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0 and state.step < cfg.steps:
                path = save_checkpoint(out / f"checkpoint-{state.step}", model, tokenizer, optimizer, scheduler, state)
                fmt.save(path / "model")
    final = out / "final"
    if final.exists():  # a rerun into the same out_dir replaces its result
        shutil.rmtree(final)
    save_checkpoint(final, model, tokenizer, optimizer, scheduler, state)
    fmt.save(final / "model")  # what `verirl serve --prm DIR` reads
    return {**metrics, "eval_history": history, "model_dir": str(final / "model")}
