"""The Triton kernels of the fused token draw (trainer/rollout/draw_kernel.py).

On the CPU under Triton's interpreter (TRITON_INTERPRET=1, in a child process, as in
test_decode_kernel.py; it runs a program at a time, too slowly for frequencies): greedy picks are the
argmax with ties to the lowest index, across chunks; a draw is exactly the argmax of the scores plus
Gumbel noise made from the same Philox stream (four uniforms per call), masked tokens never drawn; log-probs are the log-softmax
at the token; exactly the token is marked +inf; the seed decides the draw. On a GPU: the frequencies
over 200,000 rows of the real vocabulary size against softmax."""

from __future__ import annotations

import pytest
import torch

from tests.trainer.triton_interpreter import run_interpreted

pytest.importorskip("triton")


@pytest.mark.slow
def test_draw_kernel_under_the_interpreter():
    out = run_interpreted("""
        import torch
        from trainer.rollout.draw_kernel import CHUNK, draw
        g = torch.Generator().manual_seed(1)
        for vocab in (11, 2 * CHUNK + 5):  # one chunk; three, the last one short
            scores = torch.randn(6, vocab, generator=g).round(decimals=1)  # many ties
            scores[:, 3] = float("-inf")
            marked = scores.clone()
            token, logprob = draw(marked, True, 0)
            assert torch.equal(token, scores.argmax(-1)), (token, scores.argmax(-1))
            torch.testing.assert_close(logprob, torch.log_softmax(scores, -1).gather(1, token[:, None]).squeeze(1))
            assert torch.equal(torch.isinf(marked) & (marked > 0), torch.nn.functional.one_hot(token, vocab).bool())
            assert torch.equal(marked.masked_fill(marked == float("inf"), 0), scores.masked_fill(marked == float("inf"), 0))
        # draws: the kernel's noise is Triton's Philox stream, four uniforms per counter (noise_counter);
        # the same noise made by a small kernel here gives the token to expect (Gumbel-max over the row)
        import triton
        import triton.language as tl
        from trainer.rollout.draw_kernel import noise_counter

        @triton.jit
        def uniform4(out_ptr, counter_ptr, seed, n, BLOCK: tl.constexpr):
            i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
            u0, u1, u2, u3 = tl.rand4x(seed, tl.load(counter_ptr + i, mask=i < n, other=0))
            tl.store(out_ptr + 4 * i, u0, mask=i < n)
            tl.store(out_ptr + 4 * i + 1, u1, mask=i < n)
            tl.store(out_ptr + 4 * i + 2, u2, mask=i < n)
            tl.store(out_ptr + 4 * i + 3, u3, mask=i < n)

        vocab = 2 * CHUNK + 5
        scores = torch.randn(6, vocab, generator=g) * 3
        scores[:, 3] = float("-inf")
        scores[:, CHUNK - 20:CHUNK + 20] = float("-inf")  # masked across a chunk boundary
        for seed in (1234, 99):
            token, logprob = draw(scores.clone(), False, seed)
            places = [noise_counter(r, i, vocab) for r in range(scores.shape[0]) for i in range(vocab)]
            counters = torch.tensor([c for c, _ in places], dtype=torch.int64)
            four = torch.empty(len(places), 4)
            uniform4[(-(-len(places) // 1024),)](four, counters, seed, len(places), BLOCK=1024)
            u = four[torch.arange(len(places)), torch.tensor([k for _, k in places])]
            assert len(set(places)) == len(places)  # every entry its own uniform
            expected = (scores - torch.log(-torch.log(u.view_as(scores)))).argmax(-1)
            assert torch.equal(token, expected), (token, expected)
            assert not torch.isinf(scores.gather(1, token[:, None])).any()  # never a masked token
            torch.testing.assert_close(logprob, torch.log_softmax(scores, -1).gather(1, token[:, None]).squeeze(1))
        again, _ = draw(scores.clone(), False, 99)
        other, _ = draw(scores.clone(), False, 100)
        assert torch.equal(again, token) and not torch.equal(other, token)
        try:
            draw(scores.double(), False, 0)
        except ValueError as exc:
            assert "float32" in str(exc)
        else:
            raise AssertionError("float64 scores were accepted")
        print("ok")
    """)
    assert "ok" in out


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_draw_kernel_on_the_gpu_follows_softmax():
    from trainer.rollout.draw_kernel import draw
    vocab, rows = 151_936, 200_000
    logits = torch.full((vocab,), float("-inf"), device="cuda")
    where = [5, 70_000, 151_935]
    logits[where] = torch.tensor([0.0, 1.0, -0.5], device="cuda")
    freq = torch.zeros(vocab, dtype=torch.float64, device="cuda")
    for step in range(10):  # 10 x 20,000 rows, each step its own seed
        token, logprob = draw(logits.expand(rows // 10, -1).contiguous(), False, 77 + step)
        freq += torch.bincount(token, minlength=vocab).double()
        torch.testing.assert_close(logprob, torch.log_softmax(logits, 0)[token])
    torch.testing.assert_close(freq / rows, torch.softmax(logits.double(), 0), atol=5e-3, rtol=0)
