"""The transformers engine's last logits processor: it draws the next token itself and keeps its log-prob.

With `do_sample=True`, `generate` runs a softmax and a multinomial draw over the whole vocabulary
after the processors, and a recorder that wants the sampling log-probs runs a log-softmax over it once
more: on an H100 with the ~0.5B Qwen2 shape (151,936-token vocabulary) those passes took about a tenth
of a 64-row decode step (docs/benchmarks.md). `TokenSampler` draws with the Gumbel-max trick instead:
the argmax of `scores + G`, G = -log(-log(U)) for U uniform, is a draw from softmax(scores), the same
distribution as the multinomial (vLLM's sampler draws the same way, as argmax of probs / Exp(1)). The
drawn token's log-prob is its score minus the scores' logsumexp. Both are reductions over the one
scores tensor: on CUDA they run as two Triton kernels (draw_kernel.py: the vocabulary split into chunks,
one program each, then one per row), so a step reads the vocabulary's scores once and writes nothing
of vocabulary size. (Until the sixth session of 2026-11-26 this was `draw_tokens` under torch.compile:
117 us per 64-row step on an H100, and ~2 ms of host time per step on some hosts.)

`generate` then runs greedily (`sampler="fused"` in the engine): the processor sets the drawn token's
score to +inf in place, so `generate`'s argmax picks exactly the drawn token (one more read). The
library's own warpers (temperature, top-k, top-p) still run before this processor, unchanged, so the
distribution drawn from and recorded is the processed one, as before.

Log-probs are kept per call; `finish` cuts them to the tokens `generate` returned, dropping the calls
of steps it ran ahead and undid (its deferred stop check). A row that finished earlier has its later
tokens replaced by `generate` with padding; the log-probs kept for those steps belong to tokens that
were never used, and the engine cuts completions at their end anyway.
"""

from __future__ import annotations

import inspect
import logging

import torch

from trainer.rollout import draw_kernel

__all__ = ["TokenSampler", "draw_tokens"]


def draw_tokens(scores: torch.Tensor, greedy: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(token [rows], its log-prob under softmax(scores) [rows]) for float scores [rows, vocab]: the
    argmax when `greedy`, else a draw (Gumbel-max, from torch's global RNG). Ties go to the lowest
    index, as with `argmax`. The eager draw (the CPU's, and the fallback); on CUDA draw_kernel.draw.
    (Splitting each row's argmax into chunks in torch, under torch.compile, was slower on the H100,
    68-70k against 76k tokens/s at 512 rows; draw_kernel's own chunked kernels are faster:
    docs/benchmarks.md.)"""
    keyed = scores
    if not greedy:
        # argmax(scores + Gumbel); U = 0 gives -inf: that token is skipped, with probability 2^-24 each
        keyed = scores - torch.log(-torch.log(torch.rand_like(scores)))
    token = keyed.argmax(dim=-1)
    logprob = scores.gather(-1, token[:, None]).squeeze(-1) - torch.logsumexp(scores, dim=-1)
    return token, logprob


_kernel_failed: list[str] = []  # the first failure's message: later samplers draw eagerly at once


class TokenSampler:
    """The last logits processor of a greedy `generate`: draws each step's token from the processed
    scores and keeps its log-prob. `kernel`: draw with draw_kernel's Triton kernels where they can run
    (CUDA; float32 scores with unit stride, which `generate` hands over), each step's noise keyed by a
    seed drawn from torch's global generator when the sampler is made, plus the step; elsewhere, or if
    the kernels fail (no working Triton, say: a warning says why, once per process), `draw_tokens`."""

    def __init__(self, greedy: bool, kernel: bool = False):
        self.greedy = greedy
        self.kernel = kernel and not _kernel_failed
        self.seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
        self.step = 0
        self.logprobs: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.kernel and scores.dtype == torch.float32 and scores.dim() == 2 and scores.stride(1) == 1:
            try:
                _, logprob = draw_kernel.draw(scores, self.greedy, self.seed + self.step)  # marks the token too
                self.step += 1
                self.logprobs.append(logprob)
                return scores
            except Exception as exc:  # noqa: BLE001 - the kernels' failure (Triton, its compiler) is survivable
                _kernel_failed.append(f"{type(exc).__name__}: {exc}"[:300])
                logging.getLogger(__name__).warning("token draw kernel failed, drawing eagerly: %s",
                                                    _kernel_failed[0])
                self.kernel = False
        token, logprob = draw_tokens(scores, self.greedy)
        self.logprobs.append(logprob)
        return scores.scatter_(1, token[:, None], float("inf"))

    def finish(self, new_tokens: torch.Tensor) -> torch.Tensor:
        """[rows, T] log-probs of the T generated tokens `new_tokens` (the sequences' new part)."""
        made = new_tokens.shape[1]
        if len(self.logprobs) < made:
            raise RuntimeError(f"recorded {len(self.logprobs)} sampling log-probs for {made} generated tokens")
        kept = self.logprobs[:made]
        self.logprobs = []
        return torch.stack(kept, dim=1) if kept else torch.zeros(new_tokens.shape[0], 0, device=new_tokens.device)


# `generate`'s LogitsProcessorList inspects each processor's signature at every step: computed once here
# (13 us against 5 us per step on our CPU)
TokenSampler.__call__.__signature__ = inspect.signature(TokenSampler.__call__)
