"""The several-process path (trainer/distributed.py) on the CPU with two gloo processes: the sharded
gradient and loss of a batch spread over the ranks equal the one-process gradient and loss of the same
global batch, whatever the split (uneven micro-batch counts, a rank with no rows); inside `gathered`
ranks may run different numbers of forwards; the settings the path does not handle are errors naming
the key."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import torch

from trainer.compiled_layers import CompiledLayers
from trainer.config import load_config
from trainer.batches import Rollouts, accumulate_gradients, collate, no_grad_logprobs
from trainer.losses import AGGREGATIONS, BatchScale, GRPOLoss, LossSettings
from trainer.rollout import Completion, Group

ROOT = Path(__file__).resolve().parents[2]
MICRO = 2        # micro-batch rows on each rank
MAX_TOKENS = 8   # Dr. GRPO's constant
# rows of the 8-row global batch on rank 0 and rank 1: 3 vs 2 micro-batches (rank 1 pads one), and a
# rank with no rows at all (it pads every micro-batch)
SPLITS = {"uneven": ([0, 2, 3, 5, 6], [1, 4, 7]), "empty": (list(range(8)), [])}


def make_rollouts(vocab: int, pad: int) -> Rollouts:
    """2 prompts x 4 completions of different lengths (prompts and completions padded)."""
    g = torch.Generator().manual_seed(0)
    groups = []
    for b, plen in enumerate((5, 3)):
        prompt = tuple(torch.randint(5, vocab, (plen,), generator=g).tolist())
        comps = []
        for length in (6, 2, 4, 1):
            ids = tuple(torch.randint(5, vocab, (length,), generator=g).tolist())
            comps.append(Completion(ids, "", tuple((-torch.rand(length, generator=g)).tolist()), "stop"))
        groups.append(Group(f"p{b}", prompt, tuple(comps)))
    return collate(groups, pad)


def load_tiny(tiny_dir: Path):
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32)
    return model.train()


def batch_inputs(model, seed: int = 1) -> dict[str, torch.Tensor]:
    """Fixed advantages, old and reference log-probs for the 8 rows (old a little off the current
    log-probs, so ratios differ from 1 and some clip)."""
    r = make_rollouts(model.config.vocab_size, 1)
    g = torch.Generator().manual_seed(seed)
    current = no_grad_logprobs(model, r, 1.0, 8)[0]
    old = current + 0.1 * torch.randn(r.mask.shape, generator=g) * r.mask
    return {"adv": torch.randn(r.mask.shape, generator=g) * r.mask, "old": old, "ref": old - 0.05 * r.mask}


def check_gathered(model, r: Rollouts, rank: int) -> tuple[bool, bool]:
    """Inside `gathered`, rank 0 runs three forwards and rank 1 none (no collective may be waited
    for); returns (full parameters inside, this rank's shards again after)."""
    from torch.distributed.tensor import DTensor

    from trainer import distributed
    layer = model.model.layers[0].mlp.up_proj
    full_shape = (model.config.intermediate_size, model.config.hidden_size)
    with distributed.gathered(model):
        inside = tuple(layer.weight.shape) == full_shape and not isinstance(layer.weight, DTensor)
        for _ in range(3 if rank == 0 else 0):
            no_grad_logprobs(model, r, 1.0, 8)
    after = layer.weight.to_local().shape[0] == full_shape[0] // 2
    return inside, after


def _worker(rank: int, world: int, init_file: str, tiny_dir: str, inputs: dict, out: str,
            compiled: bool = False) -> None:
    """One rank: the sharded tiny model, its rows of the batch, every split x aggregation; `compiled`:
    the uneven split and the token aggregation through compiled decoder layers (algo.compile_layers)."""
    import torch.distributed as dist

    from trainer import distributed
    torch.set_num_threads(1)
    # a short timeout: a collective one rank waits for in vain fails the test instead of hanging it
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=60))
    try:
        w = distributed.init("cpu")
        model = distributed.shard_model(load_tiny(Path(tiny_dir)), w)
        r = make_rollouts(model.config.vocab_size, 1)
        layers = CompiledLayers(model, compiled)
        results = {} if compiled else {"gathered": check_gathered(model, r, rank)}
        for split, rows in SPLITS.items() if not compiled else [("uneven", SPLITS["uneven"])]:
            part = torch.tensor(rows[rank], dtype=torch.long)
            for aggregation in sorted(AGGREGATIONS) if not compiled else ["token"]:
                loss_fn = GRPOLoss(LossSettings(aggregation=aggregation, beta=0.1, is_level="token"))
                scale = distributed.global_scale(r.mask[part], MAX_TOKENS)
                model.zero_grad(set_to_none=True)
                with layers.active():
                    loss = distributed.accumulate_sharded(model, loss_fn, r, inputs["old"], inputs["ref"],
                                                          inputs["adv"], part, MICRO, scale, 1.0, {})
                losses = distributed.gather_objects(loss, w)
                grads = {n: p.grad.full_tensor() for n, p in model.named_parameters()}  # a collective
                norm = distributed.grad_norm(model, float("inf"))
                results[split, aggregation] = (sum(losses), grads, norm, scale)
        if rank == 0:
            torch.save(results, out)
    except BaseException:
        dist.destroy_process_group()
        raise
    distributed.end_process_group()
    distributed.leave(0)  # as a torchrun rank does: interpreter teardown aborted a rank once in CI


def test_sharded_gradients_equal_one_process(tiny_dir, tmp_path):
    import torch.multiprocessing as mp
    model = load_tiny(tiny_dir)
    inputs = batch_inputs(model)
    r = make_rollouts(model.config.vocab_size, 1)
    out = tmp_path / "sharded.pt"
    mp.spawn(_worker, args=(2, str(tmp_path / "rendezvous"), str(tiny_dir), inputs, str(out)), nprocs=2, join=True)
    sharded = torch.load(out, weights_only=False)
    assert sharded.pop("gathered") == (True, True)

    scale = BatchScale(tokens=float(r.mask.sum()), sequences=8.0, max_tokens=MAX_TOKENS)
    for aggregation in sorted(AGGREGATIONS):
        loss_fn = GRPOLoss(LossSettings(aggregation=aggregation, beta=0.1, is_level="token"))
        model.zero_grad(set_to_none=True)
        loss = accumulate_gradients(model, loss_fn, r, inputs["old"], inputs["ref"], inputs["adv"], torch.arange(8),
                                    8, scale, 1.0, {})
        grads = {n: p.grad for n, p in model.named_parameters()}
        norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf")))
        assert sum(g.abs().sum() for g in grads.values()) > 0
        for split in SPLITS:
            s_loss, s_grads, s_norm, s_scale = sharded[split, aggregation]
            assert s_scale == scale  # global totals on every rank
            assert s_loss == pytest.approx(loss, rel=1e-5), (split, aggregation)
            assert s_norm == pytest.approx(norm, rel=1e-5), (split, aggregation)
            assert s_grads.keys() == grads.keys()
            for name, g in grads.items():
                torch.testing.assert_close(s_grads[name], g, rtol=1e-5, atol=1e-7, msg=f"{split} {aggregation} {name}")


@pytest.mark.slow
def test_sharded_compiled_layers_equal_one_process(tiny_dir, tmp_path):
    """algo.compile_layers under FSDP2: each rank's sharded decoder layers run through their compiled
    calls (FSDP2's hooks around them; rank 1 also pads a micro-batch of one token), and the loss and
    gradients are still the one-process eager ones."""
    import torch.multiprocessing as mp
    model = load_tiny(tiny_dir)
    inputs = batch_inputs(model)
    r = make_rollouts(model.config.vocab_size, 1)
    out = tmp_path / "compiled.pt"
    mp.spawn(_worker, args=(2, str(tmp_path / "rendezvous"), str(tiny_dir), inputs, str(out), True), nprocs=2,
             join=True)
    s_loss, s_grads, _, _ = torch.load(out, weights_only=False)["uneven", "token"]
    loss_fn = GRPOLoss(LossSettings(aggregation="token", beta=0.1, is_level="token"))
    scale = BatchScale(tokens=float(r.mask.sum()), sequences=8.0, max_tokens=MAX_TOKENS)
    loss = accumulate_gradients(model, loss_fn, r, inputs["old"], inputs["ref"], inputs["adv"], torch.arange(8), 8,
                                scale, 1.0, {})
    assert s_loss == pytest.approx(loss, rel=1e-5)
    for name, p in model.named_parameters():
        torch.testing.assert_close(s_grads[name], p.grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("override, key", [
    ("rollout.engine=vllm rollout.vllm_tensor_parallel=2 rollout.sampler=prm_steps", "rollout.sampler"),
    ("rollout.prompts_per_step=5", "rollout.prompts_per_step"),
    ("rollout.engine=vllm rollout.vllm_tensor_parallel=3", "rollout.vllm_tensor_parallel"),
])
def test_unsupported_settings_name_the_key(override, key):
    from trainer.distributed import check_supported
    base = ["rollout.engine=hf", "rollout.prompts_per_step=4"]
    check_supported(load_config(ROOT / "configs/demo.yaml", base), 2)
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        check_supported(load_config(ROOT / "configs/demo.yaml", base + override.split()), 2)


def test_dynamic_sampling_batch_std_and_compiled_layers_are_supported():
    from trainer.distributed import check_supported
    check_supported(load_config(ROOT / "configs/demo.yaml", [
        "rollout.engine=hf", "rollout.prompts_per_step=4", "algo.dynamic_sampling=true",
        "algo.advantage=grpo_batch_std", "algo.compile_layers=true"]), 2)  # distributed_sampling.py


def test_world_size_reads_torchrun_env(monkeypatch):
    from trainer.distributed import world_size
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert world_size() == 1
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert world_size() == 2
