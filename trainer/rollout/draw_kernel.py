"""The fused draw of `token_sampler` as two Triton kernels: Gumbel-max token, its log-prob, and the mark.

`token_sampler.draw_tokens` compiled with torch.compile took 117 us per step at 64 rows of a
151,936-token vocabulary on an H100 (one program per row reading 0.6 MB), and on some hosts the
compiled call cost ~2 ms of host time per step (docs/benchmarks.md, fifth session). Here the vocabulary
of each row is split into chunks, one program each: a program keeps its chunk's best key (score plus
Gumbel noise from Triton's Philox generator, or the score alone when greedy) with its index, and its
chunk's max score and sum of exp(score - max). A second kernel, one program per row, takes the best key
over the chunks (ties to the lowest index, as `argmax`), the row's logsumexp from the chunks' sums, and
writes the token, its log-prob (score minus logsumexp) and +inf at the token in the scores, which is
what the processor returns for `generate`'s greedy pick. Two launches, no compilation, no vocabulary-size
tensor written.

The noise: one Philox call (`tl.rand4x`) makes four uniforms, so a program takes its entries a quarter
block at a time: the call at counter `row * padded / 4 + start / 4 + lane` (padded: the row's length
rounded up to whole chunks; start: a multiple of BLOCK) gives the uniforms of entries start + lane +
i * BLOCK / 4, i = 0..3 (`noise_counter`). One Philox call per entry, as before (2026-11-26), made the
chunk kernel ~60 us of a 64-row step on an H100, several times the time to read the scores (~12 us):
Philox's ten rounds of multiplies, not memory, were its cost.

`draw(scores, greedy, seed)`: scores float32 [rows, vocab] (contiguous; changed in place: the mark);
returns (token int64 [rows], log-prob float32 [rows]). `seed` keys the noise: the same seed, the same
draw. Runs on CUDA with Triton, or under Triton's interpreter (TRITON_INTERPRET=1) on the CPU.
"""

from __future__ import annotations

import functools

import torch

__all__ = ["draw", "noise_counter"]

BLOCK = 1024  # vocabulary entries per inner step
CHUNK = 4 * BLOCK  # vocabulary entries per program: 38 programs per row of a 151,936-token vocabulary


def noise_counter(row: int, index: int, vocab: int, chunk: int = CHUNK, block: int = BLOCK) -> tuple[int, int]:
    """(Philox counter, which of `tl.rand4x`'s four outputs) that the draw's noise of entry `index` of
    `row` comes from (tests rebuild the noise from it)."""
    padded = -(-vocab // chunk) * chunk
    quarter = block // 4
    start = index // block * block
    return row * (padded // 4) + start // 4 + index % quarter, (index - start) // quarter


@functools.cache
def _kernels():
    import triton
    import triton.language as tl

    @triton.jit(do_not_specialize=["seed"])  # a new seed every step: one compiled kernel for all
    def chunk_kernel(scores_ptr, key_ptr, index_ptr, max_ptr, sum_ptr, seed, vocab, stride_row,
                     chunks: tl.constexpr, greedy: tl.constexpr, CHUNK: tl.constexpr, BLOCK: tl.constexpr):
        row, chunk = tl.program_id(0).to(tl.int64), tl.program_id(1)  # rows x vocab can pass 2^31
        QUARTER: tl.constexpr = BLOCK // 4
        lane = tl.arange(0, QUARTER)
        best_key = tl.full([QUARTER], float("-inf"), tl.float32)
        best_index = tl.zeros([QUARTER], tl.int32)
        top = tl.full([QUARTER], float("-inf"), tl.float32)
        total = tl.zeros([QUARTER], tl.float32)
        for start in range(chunk * CHUNK, chunk * CHUNK + CHUNK, BLOCK):
            # one Philox call gives the uniforms of four entries (see `noise_counter`)
            if greedy:
                u0 = tl.zeros([QUARTER], tl.float32)  # unused
                u1 = u0
                u2 = u0
                u3 = u0
            else:
                u0, u1, u2, u3 = tl.rand4x(seed, row * (chunks * CHUNK // 4) + start // 4 + lane)
            for i in tl.static_range(4):
                if i == 0:
                    u = u0
                elif i == 1:
                    u = u1
                elif i == 2:
                    u = u2
                else:
                    u = u3
                index = start + i * QUARTER + lane
                inside = index < vocab
                score = tl.load(scores_ptr + row * stride_row + index, mask=inside, other=float("-inf"))
                key = score
                if not greedy:
                    key = score - tl.log(-tl.log(u))  # u = 0 gives -inf: skipped, as in draw_tokens
                better = key > best_key  # per lane: the earliest index wins ties
                best_key = tl.where(better, key, best_key)
                best_index = tl.where(better, index, best_index)
                new_top = tl.maximum(top, score)
                safe = tl.where(new_top == float("-inf"), 0.0, new_top)
                total = total * tl.exp(top - safe) + tl.where(inside, tl.exp(score - safe), 0.0)
                top = new_top
        # lanes to one value: the best key (lowest index among equals), the max and the rescaled sum
        chunk_key = tl.max(best_key, 0)
        chunk_index = tl.min(tl.where(best_key == chunk_key, best_index, 2147483647), 0)
        chunk_top = tl.max(top, 0)
        safe = tl.where(chunk_top == float("-inf"), 0.0, chunk_top)
        chunk_sum = tl.sum(total * tl.exp(top - safe), 0)
        slot = row * chunks + chunk
        tl.store(key_ptr + slot, chunk_key)
        tl.store(index_ptr + slot, chunk_index)
        tl.store(max_ptr + slot, chunk_top)
        tl.store(sum_ptr + slot, chunk_sum)

    @triton.jit
    def row_kernel(scores_ptr, key_ptr, index_ptr, max_ptr, sum_ptr, token_ptr, logprob_ptr, stride_row,
                   chunks: tl.constexpr, BLOCK_C: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        c = tl.arange(0, BLOCK_C)
        inside = c < chunks
        key = tl.load(key_ptr + row * chunks + c, mask=inside, other=float("-inf"))
        index = tl.load(index_ptr + row * chunks + c, mask=inside, other=2147483647)
        top = tl.load(max_ptr + row * chunks + c, mask=inside, other=float("-inf"))
        total = tl.load(sum_ptr + row * chunks + c, mask=inside, other=0.0)
        best = tl.max(key, 0)
        token = tl.min(tl.where(key == best, index, 2147483647), 0)
        row_top = tl.max(top, 0)
        safe = tl.where(row_top == float("-inf"), 0.0, row_top)
        lse = safe + tl.log(tl.sum(total * tl.exp(top - safe), 0))
        score = tl.load(scores_ptr + row * stride_row + token)
        tl.store(token_ptr + row, token.to(tl.int64))
        tl.store(logprob_ptr + row, score - lse)
        tl.store(scores_ptr + row * stride_row + token, float("inf"))

    return chunk_kernel, row_kernel


def draw(scores: torch.Tensor, greedy: bool, seed: int, *, block: int = BLOCK,
         chunk: int = CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """`block`, `chunk`: powers of two, chunk a multiple of block (smaller ones for the interpreter's tests)."""
    if scores.dtype != torch.float32 or scores.dim() != 2 or scores.stride(1) != 1:
        raise ValueError(f"draw: scores must be float32 [rows, vocab] with unit stride, got {scores.dtype} "
                         f"{tuple(scores.shape)} strides {scores.stride()}")
    rows, vocab = scores.shape
    chunks = -(-vocab // chunk)
    # the chunks' best keys, their indices (int32, in float32's 4 bytes), max scores and sums: one allocation
    keys, indices, tops, sums = torch.empty(4, rows * chunks, dtype=torch.float32, device=scores.device)
    parts = (keys, indices.view(torch.int32), tops, sums)
    token = torch.empty(rows, dtype=torch.int64, device=scores.device)
    logprob = torch.empty(rows, dtype=torch.float32, device=scores.device)
    chunk_kernel, row_kernel = _kernels()
    from triton import next_power_of_2
    chunk_kernel[(rows, chunks)](scores, *parts, seed, vocab, scores.stride(0), chunks=chunks, greedy=greedy,
                                 CHUNK=chunk, BLOCK=block)
    row_kernel[(rows,)](scores, *parts, token, logprob, scores.stride(0), chunks=chunks,
                        BLOCK_C=max(2, next_power_of_2(chunks)))
    return token, logprob
