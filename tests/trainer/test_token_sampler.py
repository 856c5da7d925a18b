"""The hf engine's own token draw (Gumbel-max; its Triton kernels are in test_draw_kernel.py) and
generate's deferred stop check: the draw follows softmax(scores) and its log-probs are the processed
distribution's; the engine gives the same groups with either sampler's bookkeeping rules and with or
without the deferred check."""

from __future__ import annotations

import pytest
import torch

from tests.trainer.test_engines import PROMPTS, load
from trainer.rollout import SamplingConfig, engine_class
from trainer.rollout.deferred_stop import deferred_stop_checks
from trainer.rollout.token_sampler import TokenSampler, draw_tokens


def test_draw_follows_softmax_and_never_draws_masked_tokens():
    torch.manual_seed(0)
    logits = torch.tensor([1.0, 0.0, -1.0, float("-inf"), 2.0])
    rows = 200_000
    token, logprob = draw_tokens(logits.expand(rows, -1).clone(), greedy=False)
    freq = torch.bincount(token, minlength=5).double() / rows
    expected = torch.softmax(logits.double(), 0)
    assert freq[3] == 0
    # 200k draws: the standard error of each frequency is below 0.0011; 0.005 is > 4.5 of them
    torch.testing.assert_close(freq, expected, atol=5e-3, rtol=0)
    torch.testing.assert_close(logprob, torch.log_softmax(logits, 0)[token])


@pytest.mark.parametrize("vocab", [11, 4096, 151_936])
def test_greedy_draw_is_the_argmax_ties_included(vocab):
    scores = torch.randn(7, vocab, generator=torch.Generator().manual_seed(1)).round(decimals=1)  # many ties
    token, logprob = draw_tokens(scores, greedy=True)
    assert torch.equal(token, scores.argmax(-1))
    torch.testing.assert_close(logprob, torch.log_softmax(scores, -1).gather(1, token[:, None]).squeeze(1))


def test_draw_follows_softmax_in_a_larger_vocabulary():
    """Mass spread far apart in a 2048-token vocabulary: the draw's frequencies."""
    torch.manual_seed(3)
    logits = torch.full((2048,), float("-inf"))
    logits[[5, 700, 1100, 2047]] = torch.tensor([0.0, 1.0, -0.5, 0.5])
    token, _ = draw_tokens(logits.expand(100_000, -1).clone(), greedy=False)
    freq = torch.bincount(token, minlength=2048).double() / 100_000
    torch.testing.assert_close(freq, torch.softmax(logits.double(), 0), atol=6e-3, rtol=0)


def test_sampler_marks_the_drawn_token_for_generate_and_drops_undone_steps():
    sampler = TokenSampler(greedy=False)
    torch.manual_seed(2)
    drawn = []
    for _ in range(3):
        scores = torch.randn(4, 9)
        logp = torch.log_softmax(scores, -1)
        marked = sampler(None, scores.clone())
        token = marked.argmax(-1)  # what a greedy `generate` picks
        drawn.append(token)
        assert bool(torch.isinf(marked).sum(-1).eq(1).all())  # only the drawn token is marked
        torch.testing.assert_close(sampler.logprobs[-1], logp.gather(1, token[:, None]).squeeze(1))
    kept = sampler.finish(torch.stack(drawn[:2], dim=1))  # the third step was run ahead and undone
    assert kept.shape == (4, 2) and sampler.logprobs == []
    with pytest.raises(RuntimeError, match="recorded 0"):
        sampler.finish(torch.zeros(4, 1, dtype=torch.long))


def test_a_draw_kernel_that_fails_draws_eagerly(monkeypatch, caplog):
    from trainer.rollout import draw_kernel, token_sampler

    def broken(scores, greedy, seed):
        raise RuntimeError("no triton here")

    monkeypatch.setattr(draw_kernel, "draw", broken)
    monkeypatch.setattr(token_sampler, "_kernel_failed", [])
    sampler = TokenSampler(greedy=True, kernel=True)
    scores = torch.randn(3, 7)
    marked = sampler(None, scores.clone())
    assert torch.equal(marked.argmax(-1), scores.argmax(-1)) and "no triton here" in caplog.text
    assert not sampler.kernel and not TokenSampler(greedy=True, kernel=True).kernel  # not tried again


class _HostEvent:
    """torch.Event for the CPU, where the host runs every step itself: nothing to wait for."""

    def __init__(self, **kwargs):
        pass

    def record(self):
        pass

    def synchronize(self):
        pass


@pytest.mark.parametrize("cache", ["dynamic", "static"])
def test_deferred_stop_check_changes_nothing(tiny_dir, cache, monkeypatch):
    """The deferred check (forced here on the CPU; the CPU has no device events, so a host one stands
    in) runs one step past the end and undoes it: the same tokens, log-probs and finish reasons, with
    EOS endings, stop strings and truncation. tests/trainer/test_grpo.py's GPU tests run it on CUDA."""
    from transformers.generation.utils import DeferredStopCheck

    monkeypatch.setattr(torch, "Event", _HostEvent)
    undone = []
    finish = DeferredStopCheck.finish
    monkeypatch.setattr(DeferredStopCheck, "finish", lambda self: undone.append(finish(self)) or undone[-1])
    model, tokenizer = load(tiny_dir)
    for sampler in ("fused", "library"):
        engine = engine_class("hf")(model, tokenizer, cache=cache, sampler=sampler)
        for sampling in (SamplingConfig(max_tokens=20, seed=5), SamplingConfig(max_tokens=20, seed=6, stop=("1",)),
                         SamplingConfig(max_tokens=200, seed=7, stop=("1",))):
            plain = engine.generate(PROMPTS, 3, sampling)
            with deferred_stop_checks(device_types=("cpu",)):
                deferred = engine.generate(PROMPTS, 3, sampling)
            assert deferred == plain
    reasons = {c.finish_reason for g in plain for c in g.completions}
    assert reasons == {"stop"} and undone.count(1) == 2  # the longest calls ended early: a step was undone
    assert undone.count(0) == 4  # the others ran to max_tokens (truncated rows): nothing to undo


def test_deferred_stop_check_is_scoped_to_its_thread_and_block():
    from transformers.generation.utils import DeferredStopCheck

    cpu = torch.device("cpu")
    with deferred_stop_checks(device_types=("cpu",)):
        assert DeferredStopCheck.is_supported(cpu, None, False, is_assistant=False)
        assert not DeferredStopCheck.is_supported(cpu, None, False, is_assistant=True)
        import threading
        seen = []
        thread = threading.Thread(target=lambda: seen.append(DeferredStopCheck.is_supported(cpu, None, False, False)))
        thread.start()
        thread.join()
        assert seen == [False]
    assert not DeferredStopCheck.is_supported(cpu, None, False, is_assistant=False)


def test_unknown_sampler_is_refused(tiny_dir):
    model, tokenizer = load(tiny_dir)
    with pytest.raises(ValueError, match="rollout.hf_sampler"):
        engine_class("hf")(model, tokenizer, sampler="mystery")


@pytest.mark.gpu
def test_on_cuda_the_deferred_check_and_the_draw_kernel(tiny_dir):
    """On CUDA (where the deferred check is on by default): the deferred stop check changes no token, the
    draw kernel's log-probs are the trainer's, and greedy decoding agrees with the library's sampler, with
    and without the grouped-query decode attention (its memory-efficient kernel)."""
    from trainer.batches import collate, no_grad_logprobs

    model, tokenizer = load(tiny_dir)
    model = model.cuda()
    sampling = SamplingConfig(max_tokens=40, seed=8, stop=("1",))
    for gqa in (False, True):
        engine = engine_class("hf")(model, tokenizer, cache="static", gqa_decode=gqa, sampler="fused")
        groups = engine.generate(PROMPTS, 4, sampling)
        plain = engine_class("hf")(model, tokenizer, cache="static", gqa_decode=gqa, sampler="fused",
                                   deferred_stop=False)
        assert plain.generate(PROMPTS, 4, sampling) == groups
        r = collate(groups, tokenizer.pad_token_id).to("cuda")
        torch.testing.assert_close(no_grad_logprobs(model, r, 1.0, 64)[0], r.engine_logp, atol=1e-4, rtol=0)
        greedy = SamplingConfig(max_tokens=24, temperature=0.0)
        library = engine_class("hf")(model, tokenizer, cache="static", gqa_decode=gqa, sampler="library")
        ours, theirs = engine.generate(PROMPTS, 1, greedy), library.generate(PROMPTS, 1, greedy)
        for a, b in zip((g.completions[0] for g in ours), (g.completions[0] for g in theirs)):
            assert a.token_ids == b.token_ids  # log-probs: the kernel's logsumexp against an eager log-softmax
            torch.testing.assert_close(torch.tensor(a.logprobs), torch.tensor(b.logprobs), atol=1e-5, rtol=0)
