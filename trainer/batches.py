"""The tensors of a GRPO/PPO batch and the passes over them: completions padded into `Rollouts`,
grouped into micro-batches cut to the columns their rows use, log-probs with and without a graph, and
the accumulated gradient of a loss over a mini-batch's micro-batches (trainer/grpo.py's steps 4 and 5;
also used by ppo.py and distributed.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from trainer.losses import BatchScale, GRPOLoss, token_logprobs
from trainer.packed_rows import pack, packing_model
from trainer.rollout import Group

__all__ = ["COLUMN_ALIGN", "MicroBatch", "Rollouts", "accumulate_gradients", "add_stats", "batch_logprobs",
           "collate", "micro_batch_loss", "micro_batches", "no_grad_logprobs", "sequence_logprobs"]


@dataclass(frozen=True)
class Rollouts:
    """N = B*G completions as tensors. Prompts are left-padded to P columns and completions
    right-padded to T, so completion token t of every row sits at column P + t."""

    input_ids: torch.Tensor       # [N, P+T]
    attention_mask: torch.Tensor  # [N, P+T]
    position_ids: torch.Tensor    # [N, P+T]
    completion_ids: torch.Tensor  # [N, T]
    mask: torch.Tensor            # [N, T] float: 1 on completion tokens
    engine_logp: torch.Tensor     # [N, T] the engine's sampling log-probs
    truncated: torch.Tensor       # [N] bool: cut at max_tokens

    def _fields(self) -> tuple[torch.Tensor, ...]:
        return (self.input_ids, self.attention_mask, self.position_ids, self.completion_ids, self.mask,
                self.engine_logp, self.truncated)

    def rows(self, index: torch.Tensor) -> Rollouts:
        return Rollouts(*(t[index] for t in self._fields()))

    def to(self, device: str) -> Rollouts:
        return Rollouts(*(t.to(device) for t in self._fields()))

    def window(self, left: int, t: int) -> Rollouts:
        """Columns `left` .. prompt end + `t`: the prompt's left padding before `left` dropped, and the
        completion cut or extended to `t` columns (new columns are padding: attention mask 0, mask 0).
        Position ids are explicit, so the kept tokens' values do not change."""
        P, T = self.input_ids.shape[1] - self.mask.shape[1], self.mask.shape[1]
        fields = [self.input_ids[:, left:P + t], self.attention_mask[:, left:P + t], self.position_ids[:, left:P + t],
                  self.completion_ids[:, :t], self.mask[:, :t], self.engine_logp[:, :t]]
        if t > T:  # position ids repeat the last one; every other field pads with 0
            fields = [torch.nn.functional.pad(f, (0, t - T), mode="replicate" if i == 2 else "constant")
                      for i, f in enumerate(fields)]
        return Rollouts(*fields, self.truncated)


def collate(groups: list[Group], pad_id: int) -> Rollouts:
    seqs = [(g.prompt_ids, c) for g in groups for c in g.completions]
    P = max(len(p) for p, _ in seqs)
    T = max(1, max(len(c.token_ids) for _, c in seqs))
    N = len(seqs)
    ids = torch.full((N, P + T), pad_id, dtype=torch.long)
    attn = torch.zeros((N, P + T), dtype=torch.long)
    engine_logp = torch.zeros((N, T))
    for i, (prompt, c) in enumerate(seqs):
        ids[i, P - len(prompt):P] = torch.tensor(prompt)
        ids[i, P:P + len(c.token_ids)] = torch.tensor(c.token_ids, dtype=torch.long)
        attn[i, P - len(prompt):P + len(c.token_ids)] = 1
        engine_logp[i, :len(c.logprobs)] = torch.tensor(c.logprobs)
    position_ids = (attn.cumsum(-1) - 1).clamp(min=0)
    truncated = torch.tensor([c.truncated for _, c in seqs])
    return Rollouts(ids, attn, position_ids, ids[:, P:], attn[:, P:].float(), engine_logp, truncated)


def sequence_logprobs(model: Any, r: Rollouts, temperature: float,
                      entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """[n, T] log-probs of the completion tokens (and entropies with `entropy`).

    The model sees each row shifted left to its first real token, so that all padding is on the right,
    and no padding mask: causal attention alone is then exact for every real token (none of them has
    padding before it), and no query position is masked out entirely, as a left-padded row's padding
    positions are under a padding mask. Fully masked query rows give NaN in some fused attention
    kernels' backward (seen as NaN weights on an H100 with compiled layers, docs/benchmarks.md), and
    without a mask attention runs as a plain causal kernel. Position ids are each token's index in its
    row, as before. Logits are computed only at the columns that predict a completion token (the
    output embedding's input is gathered per row). Inside `packed_rows.packing(model)` the rows are
    packed into one sequence without padding instead (trainer/packed_rows.py)."""
    n, T = r.completion_ids.shape
    if packing_model() is model:  # inside packed_rows.packing: the rows as one sequence, no padding at all
        packed = pack(r.input_ids, r.attention_mask, r.position_ids, T)
        keep = packed.keep.reshape(1, n * T)
        inputs = dict(input_ids=packed.input_ids, position_ids=packed.position_ids, cu_seq_lens_q=packed.cu_seq_lens,
                      cu_seq_lens_k=packed.cu_seq_lens, max_length_q=packed.longest, max_length_k=packed.longest)
    else:
        W = r.input_ids.shape[1]
        P = W - T
        columns = torch.arange(W, device=r.input_ids.device)
        shift = P - r.attention_mask[:, :P].sum(-1)                                      # [n] left padding
        keep = ((P - 1 - shift)[:, None] + columns[:T]).clamp(min=0)                    # [n, T] predicting token t
        inputs = dict(input_ids=r.input_ids.gather(1, (columns + shift[:, None]) % W),  # right padding only
                      position_ids=columns.expand(n, W))
    head = model.get_output_embeddings()
    handle = head.register_forward_pre_hook(
        lambda _module, args: (args[0].gather(1, keep[..., None].expand(-1, -1, args[0].shape[-1])), *args[1:]))
    try:
        out = model(**inputs, use_cache=False)
    finally:
        handle.remove()
    logp, ent = token_logprobs(out.logits.reshape(n, T, -1), r.completion_ids, temperature, entropy)
    return logp * r.mask, (ent * r.mask if ent is not None else None)


@dataclass(frozen=True)
class MicroBatch:
    """Rows of a batch that go through the model together, and the columns they need."""

    rows: torch.Tensor  # [m] indices into the batch (host)
    left: int           # first column any of them uses (their prompts' left padding before it is dropped)
    t: int              # completion columns any of them uses (the right padding after it is dropped)


# A cut micro-batch's width (columns) is rounded up to a multiple of this: aligned matrix shapes.
# 0: micro-batches are not cut (every one has the batch's full width).
COLUMN_ALIGN = 16


def micro_batches(r: Rollouts, rows: torch.Tensor, micro: int, align: int = COLUMN_ALIGN) -> list[MicroBatch]:
    """`rows` of `r` in micro-batches of at most `micro`, the longest rows first and rows of similar
    length together, each cut to the columns its rows use. A batch is padded to its longest prompt and
    longest completion; a random group's mean completion is often half its longest, so without this
    half of every forward and backward is padding. The sum of the micro-batches' gradients does not
    depend on how rows are grouped (the loss is divided by whole-batch totals, BatchScale). Widths are
    rounded up to multiples of `align` (the completion side may pass the batch's T); `align` 0: not
    cut, every micro-batch as wide as the batch. One host sync."""
    if not len(rows):
        return []
    T = r.mask.shape[1]
    P = r.input_ids.shape[1] - T
    device = r.mask.device
    index = rows.to(device)
    lengths = torch.stack([r.attention_mask[index, :P].sum(-1), r.mask[index].sum(-1).long()]).cpu()
    prompt, completion = lengths[0], lengths[1]
    order = torch.sort(prompt + completion, descending=True, stable=True).indices
    out = []
    for chunk in order.split(micro):
        if not align:
            out.append(MicroBatch(rows[chunk].cpu(), 0, T))
            continue
        left, t = P - int(prompt[chunk].max()), max(1, int(completion[chunk].max()))
        # aligned by columns added on the completion side: the prompt side keeps no column that every row pads
        t += -(P - left + t) % align
        out.append(MicroBatch(rows[chunk].cpu(), left, t))
    return out


def batch_logprobs(model: Any, r: Rollouts, mb: MicroBatch, temperature: float,
                   entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`sequence_logprobs` of a micro-batch's rows, computed on its columns, zero-padded back to [m, T]."""
    T = r.mask.shape[1]
    logp, ent = sequence_logprobs(model, r.rows(mb.rows.to(r.mask.device)).window(mb.left, mb.t), temperature,
                                  entropy)
    logp, ent = logp[:, :T], (ent[:, :T] if ent is not None else None)
    pad = (0, T - logp.shape[1])
    return torch.nn.functional.pad(logp, pad), (torch.nn.functional.pad(ent, pad) if ent is not None else None)


def no_grad_logprobs(model: Any, r: Rollouts, temperature: float, micro: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[n, T] log-probs and entropies, `micro` rows at a time (micro_batches), without a graph."""
    logp, ent = torch.zeros_like(r.mask), torch.zeros_like(r.mask)
    with torch.no_grad():
        for mb in micro_batches(r, torch.arange(len(r.mask)), micro):
            part_logp, part_ent = batch_logprobs(model, r, mb, temperature, entropy=True)
            index = mb.rows.to(r.mask.device)
            logp[index], ent[index] = part_logp.to(logp.dtype), part_ent.to(ent.dtype)
    return logp, ent


def add_stats(sums: dict[str, float], stats: dict[str, torch.Tensor]) -> None:
    """Add device-side metric sums into `sums` with one host transfer."""
    if stats:
        values = torch.stack([v.detach().double().reshape(()) for v in stats.values()]).tolist()
        for k, v in zip(stats, values):
            sums[k] = sums.get(k, 0.0) + v


def accumulate_gradients(policy: Any, loss_fn: GRPOLoss, r: Rollouts, old_logp: torch.Tensor | None,
                         ref_logp: torch.Tensor | None, advantages: torch.Tensor, part: torch.Tensor, micro: int,
                         scale: BatchScale, temperature: float, sums: dict[str, float]) -> float:
    """Backward the loss of rows `part` of `r`, `micro` rows at a time (micro_batches); gradients add
    up in .grad. Returns the part's loss; metric sums are added into `sums`. The loss is divided by
    the part's totals (`scale`), so the gradient does not depend on `micro` or on the grouping.
    `old_logp` None: on-policy (micro_batch_loss)."""
    total = torch.zeros((), dtype=torch.float64, device=r.mask.device)  # summed on the device: no sync per micro-batch
    stats_total: dict[str, torch.Tensor] = {}
    for mb in micro_batches(r, part, micro):
        loss, stats = micro_batch_loss(policy, loss_fn, r, mb, old_logp, ref_logp, advantages, scale, temperature)
        loss.backward()
        total += loss.detach().double()
        for k, v in stats.items():
            stats_total[k] = stats_total[k] + v if k in stats_total else v
    add_stats(sums, stats_total)
    return float(total)


def micro_batch_loss(policy: Any, loss_fn: GRPOLoss, r: Rollouts, mb: MicroBatch, old_logp: torch.Tensor | None,
                     ref_logp: torch.Tensor | None, advantages: torch.Tensor, scale: BatchScale,
                     temperature: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss of one micro-batch (log-probs under `policy`, with a graph) and its metric sums.

    `old_logp` None: on-policy, the batch's only optimizer step (one PPO epoch, one mini-batch), where
    the weights that would give the old log-probs are the ones running this forward: its own log-probs,
    detached, are the old ones (ratio 1, with the gradient of the ratio), and its entropies are summed
    into the stats ("entropy"). This saves the separate no-grad pass over the batch, as TRL does when
    it has one iteration per generation batch."""
    rows = mb.rows.to(r.mask.device)
    on_policy = old_logp is None
    logp, ent = batch_logprobs(policy, r, mb, temperature, entropy=on_policy)             # [m, T]
    old = logp.detach() if on_policy else old_logp[rows]
    loss, stats = loss_fn(logp, old, r.engine_logp[rows], None if ref_logp is None else ref_logp[rows],
                          advantages[rows], r.mask[rows], scale)
    if ent is not None:
        stats["entropy"] = (ent * r.mask[rows]).sum()
    return loss, stats
