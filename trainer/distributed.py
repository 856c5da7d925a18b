"""GRPO on several devices: torchrun processes, the policy sharded with FSDP2 (`fully_shard`).

    torchrun --nproc_per_node 2 -m trainer.cli grpo --config FILE model.device=cuda rollout.engine=hf|vllm

`grpo.train` hands over to `train` here when WORLD_SIZE > 1. The process group is NCCL on cuda, gloo on
the CPU (the tests run two gloo processes). NVLink multicast (NVLS) is kept off unless NCCL_NVLS_ENABLE
is set. Per step, with W ranks and B = prompts_per_step:

  * each rank samples and scores its own B/W prompts: the slice `rank*B/W ...` of the one-process data
    order, so the global batch is the one-process batch. Groups stay whole on one rank, so group
    statistics (advantages, the zero-variance filter) need no communication. (With dynamic sampling,
    see below.)
  * generation and the no-grad log-prob passes run with the parameters gathered (`gathered`): a rank
    then makes as many forwards as its own rows need (generation lengths differ by rank) with no
    collective per forward. Cost: the full parameters are held during those phases.
  * the update divides the loss by GLOBAL totals of each mini-batch (all-reduced token and sequence
    counts, `global_scale`), and FSDP sums the gradients instead of averaging (divide factor 1): the
    gradient is the one-process gradient of the same global batch (tests/trainer/test_distributed.py).
    FSDP's collectives pair up forward by forward, so every rank runs the same number of micro-batches:
    a rank with fewer rows pads with zero-loss micro-batches (`accumulate_sharded`).
  * metrics are global (rewards, counts, loss, statuses gathered from every rank; `seconds` are rank
    0's). Only rank 0 writes metrics, samples and checkpoints; the checkpoint's weights and optimizer
    state are the full (gathered) state dicts, the same layout as one process's checkpoint (the
    optimizer state keyed by parameter names: it resumes under torchrun, re-sharded, not in one process).
  * the verifier: `reward.address` for every rank; when empty, rank 0 starts the embedded server and
    sends its address to the others.

Departs from the one-process recipe: with mini_batches > 1, each rank splits its own kept rows into
`mini_batches` parts (global mini-batch j = the ranks' parts j), not one permutation of all rows; each
optimizer step is still the exact gradient of its global mini-batch. `on_step` runs on every rank, with
the parameters gathered; the run stops when any rank's `on_step` says so.

The vLLM engine runs inside the job's process group (vLLM's external launcher): one engine per rank
(`rollout.vllm_tensor_parallel=1`, each rank sampling its own prompts with its own seed), or one engine
sharded over each T consecutive ranks (=T, for a model one GPU cannot hold: the group's ranks generate
all of the group's prompts alike and each keeps its own, rollout/tensor_parallel.py). After each
optimizer step every rank loads the weights into its engine (shard), gathered from the FSDP2 shards one
sync bucket at a time.

The PRM step sampler (`rollout.sampler=prm_steps`) grows each rank's own groups, its draws seeded per
rank and step; not with vLLM tensor parallel (the ranks of an engine would make different numbers of
calls). Its accept-rate counts are summed over the ranks.

Dynamic sampling runs in global rounds (each rank samples a share of every round; the ranks agree on
when to stop and on the batch, and exchange groups where a rank's part of the batch was sampled by
another: trainer/distributed_sampling.py). The batch-std advantage divides by the std of every rank's
rewards together (gathered), as one process does over its batch.

`algo.compile_layers` compiles the sharded decoder layers' calls for the log-prob and update passes,
as in one process; FSDP2's all-gather and reduce-scatter hooks run around the compiled calls.

Not handled (an error at start naming the key): prompts_per_step not divisible by the world size. The
KL reference model (beta > 0) is replicated on each rank, not sharded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, NoReturn

import torch
import torch.distributed as dist

from trainer.advantages import NEEDS_STEPS
from trainer.checkpoint import RecipeState
from trainer.compiled_layers import CompiledLayers
from trainer.config import GRPOConfig, to_dict
from trainer.batches import add_stats, micro_batch_loss, micro_batches, no_grad_logprobs
from trainer.distributed_sampling import global_batch_std, sample_shared_batch
from trainer.grpo import _engine, _initial_model_dir, _load_model, _sampler_metrics, advantage_batch, load_problems
from trainer.logging_sinks import MetricSinks
from trainer.losses import BatchScale, GRPOLoss, LossSettings
from trainer.optim import build_optimizer, build_scheduler
from trainer.rollout.tensor_parallel import TensorParallelShare, tensor_parallel_group
from trainer.rewards import RewardSettings, Scored, merge_scored
from trainer.step_sampler import StepSampler

__all__ = ["World", "world_size", "init", "check_supported", "shard_model", "gathered", "global_scale",
           "accumulate_sharded", "rank_slice", "gather_objects", "grad_norm", "save_sharded_checkpoint",
           "load_sharded_recipe_state", "train"]


@dataclass(frozen=True)
class World:
    rank: int
    size: int
    device: str   # this rank's device: "cpu" or "cuda:<local rank>"

    @property
    def main(self) -> bool:
        return self.rank == 0


def world_size() -> int:
    """Processes of this run as torchrun tells them (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init(device: str) -> World:
    """Join the process group torchrun describes (env RANK, WORLD_SIZE, MASTER_ADDR/PORT):
    NCCL on cuda (one GPU per process, LOCAL_RANK), gloo on the CPU."""
    if device.startswith("cuda"):
        os.environ.setdefault("NCCL_NVLS_ENABLE", "0")  # NVLink multicast off (our machines' rule)
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return World(dist.get_rank(), dist.get_world_size(), device)


def check_supported(cfg: GRPOConfig, size: int) -> None:
    """The settings this path does not handle, as errors naming the key."""
    r = cfg.rollout
    if r.sampler != "groups" and r.engine == "vllm" and r.vllm_tensor_parallel > 1:
        raise ValueError(f"rollout.sampler: {r.sampler!r} is not supported with rollout.vllm_tensor_parallel > 1 "
                         "(its ranks would make different numbers of engine calls)")
    if r.engine == "vllm" and size % r.vllm_tensor_parallel:
        raise ValueError(f"rollout.vllm_tensor_parallel: {r.vllm_tensor_parallel} does not divide the {size} "
                         "processes (each engine takes that many consecutive ranks)")
    if r.prompts_per_step % size:
        raise ValueError(f"rollout.prompts_per_step: {r.prompts_per_step} is not divisible by the "
                         f"{size} processes")


def rank_slice(prompts: int, world: World) -> tuple[int, int]:
    """(offset, count) of this rank's prompts among the step's `prompts`."""
    count = prompts // world.size
    return world.rank * count, count


# ---------------------------------------------------------------- the sharded model
def shard_model(model: Any, world: World) -> Any:
    """FSDP2: each decoder layer is a unit (gathered for its forward, resharded after), then the root
    (embeddings, final norm, LM head). Gradients are SUMMED over ranks: the loss is already divided
    by global totals, so averaging would divide twice."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule, fully_shard
    mesh = init_device_mesh(world.device.split(":")[0], (world.size,))
    for layer in model.model.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.set_gradient_divide_factor(1.0)
            module.set_force_sum_reduction_for_comms(True)  # a plain SUM (gloo has no pre-multiplied sum)
    return model


@contextlib.contextmanager
def gathered(model: Any) -> Iterator[Any]:
    """The full parameters on every rank for a no-grad phase (generation, log-probs): forwards inside
    need no collective, so ranks may run different numbers of them (none, too)."""
    from torch.distributed.fsdp import FSDPModule
    units = [m for m in model.modules() if isinstance(m, FSDPModule)]  # root first, same order on every rank
    for unit in units:
        unit.unshard()  # not recursive: every unit by itself
    model.set_reshard_after_forward(False)  # recursive
    try:
        yield model
    finally:
        # back to fully_shard's defaults: layers reshard after forward, the root does not (its
        # parameters are needed again at once in backward)
        model.set_reshard_after_forward(True)
        model.set_reshard_after_forward(False, recurse=False)
        for unit in units:
            unit.reshard()


def global_scale(mask: torch.Tensor, max_tokens: int) -> BatchScale:
    """The normalisers of a mini-batch whose rows are spread over ranks; `mask` [n, T] is this rank's
    part (n may be 0). Every rank gets the same totals."""
    totals = torch.tensor([float(mask.sum()), float(mask.shape[0])], dtype=torch.float64, device=mask.device)
    dist.all_reduce(totals)
    return BatchScale(tokens=float(totals[0]), sequences=float(totals[1]), max_tokens=max_tokens)


def _max_over_ranks(value: int, device: str) -> int:
    t = torch.tensor([value], dtype=torch.long, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t)


def accumulate_sharded(policy: Any, loss_fn: GRPOLoss, r: Any, old_logp: torch.Tensor,
                       ref_logp: torch.Tensor | None, advantages: torch.Tensor, part: torch.Tensor, micro: int,
                       scale: BatchScale, temperature: float, sums: dict[str, float]) -> float:
    """`grpo.accumulate_gradients` for a sharded policy: this rank's rows `part` of `r`, `micro` at a
    time, then zero-loss micro-batches until every rank has run as many. Returns this rank's share of
    the loss (the ranks' shares add up to the global mini-batch loss, since `scale` is global)."""
    chunks = micro_batches(r, part, micro)
    device = r.mask.device
    rounds = _max_over_ranks(len(chunks), str(device))
    total = torch.zeros((), dtype=torch.float64, device=device)  # summed on the device: no sync per micro-batch
    stats_total: dict[str, torch.Tensor] = {}
    for i in range(rounds):
        # gradients accumulate unsharded on each rank and are reduce-scattered once, after the last
        # round (every rank runs `rounds` backwards, so the last is the same round everywhere)
        policy.set_requires_gradient_sync(i == rounds - 1)
        if i < len(chunks):
            loss, stats = micro_batch_loss(policy, loss_fn, r, chunks[i], old_logp, ref_logp, advantages, scale,
                                           temperature)
            loss.backward()
            total += loss.detach().double()
            for k, v in stats.items():
                stats_total[k] = stats_total[k] + v if k in stats_total else v
        else:
            # one token through every sharded module: its reduce-scatter pairs with the other ranks'
            out = policy(input_ids=torch.zeros((1, 1), dtype=torch.long, device=device), use_cache=False)
            (out.logits.float().sum() * 0.0).backward()
    add_stats(sums, stats_total)
    policy.set_requires_gradient_sync(True)
    return float(total)


def grad_norm(model: Any, clip: float) -> float:
    """Clip the global gradient norm (over every rank's shards); returns the norm before clipping."""
    from torch.distributed.tensor import DTensor
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    return float(norm.full_tensor() if isinstance(norm, DTensor) else norm)


def gather_objects(obj: Any, world: World) -> list[Any]:
    """Every rank's `obj` (picklable), in rank order, on every rank."""
    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


# ---------------------------------------------------------------- checkpoints
def save_sharded_checkpoint(path: Path, model: Any, tokenizer: Any, optimizer: torch.optim.Optimizer,
                            scheduler: Any, state: RecipeState, world: World) -> None:
    """checkpoint.save_checkpoint's layout from a sharded model: the full weights and optimizer state
    are gathered (a collective: every rank calls this), rank 0 writes. The optimizer state is keyed by
    parameter names (torch.distributed.checkpoint's full state dict), not by index."""
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                         get_optimizer_state_dict)
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    weights = get_model_state_dict(model, options=options)
    optim = get_optimizer_state_dict(model, optimizer, options=options)
    if world.main:
        tmp = path.with_name(path.name + ".tmp")
        model.save_pretrained(tmp / "model", state_dict=weights, safe_serialization=True)
        tokenizer.save_pretrained(tmp / "model")
        torch.save({"optimizer": optim, "optimizer_format": "full_state_dict", "scheduler": scheduler.state_dict(),
                    "python_rng": random.getstate(), "torch_rng": torch.random.get_rng_state(),
                    "step": state.step, "data_position": state.data_position}, tmp / "recipe_state.pt")
        tmp.rename(path)
    dist.barrier()


# ---------------------------------------------------------------- the verifier
@contextlib.contextmanager
def _verifier(cfg: GRPOConfig, world: World) -> Iterator[Any]:
    """A client on every rank: of `reward.address`, or of a server rank 0 starts for the run."""
    from verifier_service.client import VerifierClient
    with contextlib.ExitStack() as stack:
        address = cfg.reward.address
        if not address:
            box: list[Any] = [None]
            if world.main:
                from verifier_service.config import ServerConfig
                from verifier_service.server import embedded_server
                sandbox = "full" if cfg.reward.code > 0 else "off"
                box[0] = stack.enter_context(embedded_server(ServerConfig(
                    math_workers=cfg.reward.server_math_workers, sandbox=sandbox)))
            dist.broadcast_object_list(box, src=0)
            address = box[0]
            # rank 0's server stops when rank 0 leaves: only after every rank is done with it
            stack.callback(dist.barrier)
        yield stack.enter_context(VerifierClient(address, timeout=cfg.reward.timeout_s))


# ---------------------------------------------------------------- metrics
def _local_counts(scored: Scored, valid: torch.Tensor, lengths: torch.Tensor, truncated: torch.Tensor,
                  zero_std: torch.Tensor, kept: int, tokens: float, entropy_sum: float) -> dict[str, float]:
    judged = torch.tensor(scored.rewards)[valid.view(-1)].double()
    return {"reward_sum": float(judged.sum()), "reward_sq": float((judged ** 2).sum()), "judged": judged.numel(),
            "completions": lengths.numel(), "length_sum": float(lengths.sum()),
            "truncated": int(truncated.sum()), "groups": zero_std.numel(), "zero_std": int(zero_std.sum()),
            "kept": kept, "tokens": tokens, "entropy_sum": entropy_sum}


def _sum_dicts(parts: list[dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for p in parts:
        for k, v in p.items():
            out[k] = out.get(k, 0.0) + v
    return out


# ---------------------------------------------------------------- the recipe
def train(cfg: GRPOConfig, *,
          on_step: Callable[[int, dict[str, Any], Any], bool | None] | None = None) -> dict[str, Any]:
    """`grpo.train` on every rank of a torchrun job (see the module docstring)."""
    check_supported(cfg, world_size())
    owned = not dist.is_initialized()  # a caller's process group is the caller's to end
    world = init(cfg.model.device)
    try:
        result = _run(cfg, world, on_step)
    except BaseException:
        if owned:  # no barrier: the other ranks may never reach one
            dist.destroy_process_group()
        raise
    if owned:
        end_process_group()
    return result


def end_process_group() -> None:
    """Destroy the process group once every rank is done with its collectives: a gloo rank torn down
    while another still talks to it can abort ("terminate called without an active exception")."""
    dist.barrier()
    dist.destroy_process_group()


def leave(code: int = 0) -> NoReturn:
    """End a rank's process now, without Python's teardown or C++ static destructors. A rank's work is
    done and written by then; what is left can only fail: about one run in seven on the CPU, a gloo or
    gRPC thread still joinable at teardown aborted a rank ("terminate called without an active
    exception"), which torchrun or `mp.spawn` reports as a failed job."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _run(cfg: GRPOConfig, world: World,
         on_step: Callable[[int, dict[str, Any], Any], bool | None] | None) -> dict[str, Any]:
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out_dir)
    if world.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))

    from transformers import AutoTokenizer
    if world.main:  # the tiny model is written once (by rank 0), then read by every rank
        _initial_model_dir(cfg, out)
    dist.barrier()
    initial_dir = out / "tiny_model" if cfg.model.tiny else Path(cfg.model.path)
    model_dir = Path(cfg.resume) / "model" if cfg.resume else initial_dir
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    local_cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, device=world.device))
    policy = shard_model(_load_model(model_dir, local_cfg, trainable=True), world)
    # the sharded decoder layers' calls compiled for the trainer's passes (FSDP2's hooks run around them)
    compiled = CompiledLayers(policy, cfg.algo.compile_layers)
    reference = _load_model(initial_dir, local_cfg, trainable=False) if cfg.algo.beta > 0 else None
    optimizer = build_optimizer(policy, cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.betas)
    scheduler = build_scheduler(optimizer, cfg.optim.schedule, cfg.steps, cfg.optim.warmup_steps)
    state = RecipeState(step=0, data_position=0)
    if cfg.resume:
        state = load_sharded_recipe_state(Path(cfg.resume), policy, optimizer, scheduler)

    a, r = cfg.algo, cfg.rollout
    loss_fn = GRPOLoss(LossSettings(eps_low=a.eps_low, eps_high=a.eps_high, beta=a.beta, kl=a.kl,
                                    aggregation=a.aggregation, is_level=a.is_level, is_cap=a.is_cap))
    rewards_cfg = RewardSettings(math=cfg.reward.math, code=cfg.reward.code, steps=cfg.reward.steps,
                                 want_step_scores=a.advantage in NEEDS_STEPS, unjudged=cfg.reward.unjudged,
                                 penalty=cfg.reward.penalty, timeout_s=cfg.reward.timeout_s,
                                 step_separator=cfg.reward.step_separator)
    problems = load_problems(cfg)
    G, temperature, device = r.group_size, r.temperature, world.device
    # this rank's sampling seed (ranks must not draw alike); its prompt shares: distributed_sampling.py
    rank_cfg = dataclasses.replace(cfg, seed=cfg.seed + 1_000_003 * world.rank)
    # hf: generates with the (gathered) policy itself. vllm: an engine per `vllm_tensor_parallel` ranks,
    # seeded per engine (its ranks must draw alike), each rank given its own prompts' groups
    tp = r.vllm_tensor_parallel if r.engine == "vllm" else 1
    engine = _engine(dataclasses.replace(rank_cfg, seed=cfg.seed + 1_000_003 * (world.rank // tp)), model_dir,
                     policy, tokenizer, torchrun=True)
    if tp > 1:
        engine = TensorParallelShare(engine, tensor_parallel_group(world.rank, world.size, tp))

    history: list[float] = []
    metrics: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(_verifier(cfg, world))
        sinks = (stack.enter_context(MetricSinks(out, cfg.log, total_steps=cfg.steps, first_step=state.step,
                                                 config=to_dict(cfg))) if world.main else None)
        samples_log = stack.enter_context(open(out / "samples.jsonl", "a")) if world.main else None
        sampler = (StepSampler(engine, client, cfg.step_sampler, tokenizer.eos_token_id, cfg.reward.timeout_s)
                   if r.sampler == "prm_steps" else None)
        for step in range(state.step, cfg.steps):
            t_step = time.monotonic()

            # 1-2. this rank's groups, scored
            if sampler is not None:  # its engine calls draw from torch's stream: this rank's own, per step
                torch.manual_seed(rank_cfg.seed * 1_000_033 + step)
            with gathered(policy):  # this rank's share of the global batch (dynamic sampling: global rounds)
                sampled = sample_shared_batch(cfg, rank_cfg, engine, sampler, client, problems, tokenizer,
                                              rewards_cfg, step, state.data_position, world)
            groups, scored, times = sampled.groups, sampled.scored, dict(sampled.seconds)
            completions = [c for g in groups for c in g.completions]
            engine.sleep()  # GPU vLLM: free its memory for the trainer until the sync

            # 3. advantages from this rank's whole groups (the batch std, if used, over every rank's rewards)
            batch_std = (global_batch_std(scored.rewards, scored.valid, world)
                         if a.advantage == "grpo_batch_std" else None)
            rollouts, valid, adv, kept = advantage_batch(groups, scored, tokenizer, a, G, batch_std)
            N = len(rollouts.mask)

            # 4. old and reference log-probs of this rank's rows, [K, T]
            t = time.monotonic()
            on_device = rollouts.rows(kept).to(device)
            advantages = adv.tokens[kept].to(device)
            with gathered(policy), compiled.active():
                old_logp, entropy = no_grad_logprobs(policy, on_device, temperature, a.micro_batch_size)
            ref_logp = (no_grad_logprobs(reference, on_device, temperature, a.micro_batch_size)[0]
                        if reference is not None else None)
            times["logprobs"] = time.monotonic() - t

            # 5. updates; mini-batch j is every rank's part j, normalised by its global totals
            t = time.monotonic()
            K = len(kept)
            K_all = int(sum(gather_objects(K, world)))
            sums: dict[str, float] = {}
            losses, grad_norms = [], []
            for epoch in range(a.ppo_epochs if K_all else 0):
                perm = torch.randperm(K, generator=torch.Generator().manual_seed(cfg.seed + 7919 * step + epoch))
                for part in torch.tensor_split(perm, min(a.mini_batches, K_all)):
                    scale = global_scale(on_device.mask[part.to(device)], r.max_tokens)
                    optimizer.zero_grad(set_to_none=True)
                    with compiled.active():
                        total = accumulate_sharded(policy, loss_fn, on_device, old_logp, ref_logp, advantages,
                                                   part, a.micro_batch_size, scale, temperature, sums)
                    grad_norms.append(grad_norm(policy, cfg.optim.grad_clip if cfg.optim.grad_clip > 0
                                                else float("inf")))
                    optimizer.step()
                    losses.append(total)
            scheduler.step()
            times["update"] = time.monotonic() - t
            if r.engine == "vllm":  # each rank's engine gets the new weights, gathered bucket by bucket
                t = time.monotonic()
                engine.sync_weights(policy)
                times["weight_sync"] = time.monotonic() - t
            state = RecipeState(step=step + 1, data_position=state.data_position + sampled.prompts_sampled)
            times["total"] = time.monotonic() - t_step

            # 6. global metrics (every rank computes the same), rank 0 writes them
            lengths = rollouts.mask.sum(-1)
            local = _local_counts(scored, valid, lengths, rollouts.truncated, adv.zero_std, K,
                                  float(on_device.mask.sum()), float(entropy.sum()) if K else 0.0)
            parts = gather_objects({"counts": local, "sums": sums, "losses": losses, "scored": scored,
                                    "sampler": sampled.sampler_stats}, world)
            c = _sum_dicts([p["counts"] for p in parts])
            stat_sums = _sum_dicts([p["sums"] for p in parts])
            step_losses = [sum(x) for x in zip(*(p["losses"] for p in parts))]  # each optimizer step's global loss
            every = merge_scored([p["scored"] for p in parts])
            mean = c["reward_sum"] / c["judged"] if c["judged"] else float("nan")
            history.append(mean)
            tokens_seen = c["tokens"] * max(1, a.ppo_epochs)
            metrics = {
                "step": step + 1, "lr": scheduler.get_last_lr()[0], "world_size": world.size,
                "reward_mean": mean,
                "reward_std": (max(0.0, c["reward_sq"] / c["judged"] - mean ** 2) ** 0.5) if c["judged"] else 0.0,
                **{f"reward_{k}": v for k, v in every.check_means.items()},
                "statuses": {k: dict(v) for k, v in every.statuses.items()}, "unjudged": every.unjudged,
                "zero_std_groups": int(c["zero_std"]), "zero_std_fraction": c["zero_std"] / max(c["groups"], 1),
                "kept": int(c["kept"]), "completions": int(c["completions"]),
                "sampling_rounds": sampled.rounds, "prompts_sampled": sampled.prompts_sampled,
                "reward_mean_sampled": sampled.reward_mean_sampled,
                "zero_std_groups_sampled": sampled.zero_std_sampled,
                "loss": sum(step_losses) / len(step_losses) if step_losses else float("nan"),
                "grad_norm": sum(grad_norms) / len(grad_norms) if grad_norms else float("nan"),
                **{k: v / tokens_seen for k, v in stat_sums.items()},
                "entropy": c["entropy_sum"] / c["tokens"] if c["tokens"] else float("nan"),
                "completion_length": c["length_sum"] / max(c["completions"], 1),
                "truncated_fraction": c["truncated"] / max(c["completions"], 1),
                "seconds": {k: round(v, 4) for k, v in times.items()},
                "generate_tokens_per_s": float(lengths.sum()) / max(times["generate"], 1e-9) * world.size,
                "verifier_seconds": scored.seconds,
                **_sampler_metrics(sum((p["sampler"] for p in parts), Counter())),
            }
            if world.main:
                sinks.write(step + 1, metrics)
                for i in range(min(cfg.log_samples, N)):
                    samples_log.write(json.dumps({"step": step + 1, "prompt": groups[i // G].prompt,
                                                  "completion": completions[i].text,
                                                  "reward": scored.rewards[i]}) + "\n")
                samples_log.flush()
            stop = False
            if on_step is not None:
                with gathered(policy):
                    stop = bool(on_step(step + 1, metrics, policy))
                stop = any(gather_objects(stop, world))
            if cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0 and state.step < cfg.steps:
                save_sharded_checkpoint(out / f"checkpoint-{state.step}", policy, tokenizer, optimizer, scheduler,
                                        state, world)
            if stop:
                break
        save_sharded_checkpoint(out / f"checkpoint-{state.step}-final", policy, tokenizer, optimizer, scheduler,
                                state, world)
    return {**metrics, "reward_history": history}


def load_sharded_recipe_state(path: Path, model: Any, optimizer: torch.optim.Optimizer,
                              scheduler: Any) -> RecipeState:
    """Resume from a checkpoint that `save_sharded_checkpoint` wrote (every rank reads the file and
    keeps its shards of the optimizer state). The weights come from <path>/model."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict
    blob = torch.load(path / "recipe_state.pt", weights_only=False)
    if blob.get("optimizer_format") != "full_state_dict":
        raise ValueError(f"resume: {path} was written by one process; resume it with one process")
    set_optimizer_state_dict(model, optimizer, blob["optimizer"], options=StateDictOptions(full_state_dict=True))
    scheduler.load_state_dict(blob["scheduler"])
    random.setstate(blob["python_rng"])
    torch.random.set_rng_state(blob["torch_rng"])
    return RecipeState(step=blob["step"], data_position=blob["data_position"])
