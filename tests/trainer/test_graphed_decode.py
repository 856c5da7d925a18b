"""Decode steps replayed from a CUDA graph per `generate` call (trainer/rollout/graphed_decode.py).

On the CPU: what a graph is keyed on (inputs, and the model's tensors, modules and modes), and that nothing is installed off CUDA. On a GPU (`gpu` tests):
the engine's generations with the graphs equal those of transformers' own compiled call, token for
token, with padded and one-length prompts, across several calls (each capturing its own graph) and
batch sizes, and the graphs did the work (one capture, every later decode step a replay).
"""

from __future__ import annotations

import pytest
import torch

from trainer.rollout import SamplingConfig
from trainer.rollout.graphed_decode import _signature, graphed_decode, model_key
from trainer.rollout.merged_projections import merged_projections
from trainer.rollout.hf_engine import HFEngine

PADDED = ["7+5=", "a much longer prompt, padded less: 3*4=", "x"]
EVEN = ["7+5=", "3*4=", "9-2="]


def _model(tiny_dir, device="cpu", dtype=torch.float32):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    return (AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=dtype).to(device),
            AutoTokenizer.from_pretrained(tiny_dir))


def test_model_key_sees_new_tensors_swapped_modules_and_modes_not_in_place_changes(tiny_dir):
    model, _ = _model(tiny_dir)
    key = model_key(model)
    with torch.no_grad():
        model.model.layers[0].mlp.up_proj.weight.mul_(2)  # an optimizer step: in place
    assert model_key(model) == key
    with merged_projections(model):  # the merged copies are read too
        merged = model_key(model)
    assert merged != key and model_key(model) == key
    model.model.norm.weight.data = model.model.norm.weight.data.clone()  # a new tensor
    assert model_key(model) != key
    key = model_key(model)
    model.lm_head = torch.nn.Linear(model.lm_head.in_features, model.lm_head.out_features, bias=False)
    assert model_key(model) != key
    key = model_key(model)
    model.train()
    assert model_key(model) != key
    model.eval()
    model.set_attn_implementation("eager")
    assert model_key(model) != key


def test_signature_keys_on_shapes_dtypes_strides_and_plain_values():
    ids, mask = torch.zeros(4, 1, dtype=torch.long), torch.ones(4, 1, 1, 9, dtype=torch.bool)
    key = _signature({"input_ids": ids, "attention_mask": mask, "use_cache": True, "return_dict": True})
    assert key == _signature({"input_ids": ids + 1, "attention_mask": ~mask, "use_cache": True, "return_dict": True})
    assert key != _signature({"input_ids": torch.zeros(5, 1, dtype=torch.long), "attention_mask": mask,
                              "use_cache": True, "return_dict": True})
    assert key != _signature({"input_ids": ids.int(), "attention_mask": mask, "use_cache": True, "return_dict": True})
    assert key != _signature({"input_ids": ids, "attention_mask": mask, "use_cache": False, "return_dict": True})
    assert key != _signature({"input_ids": ids, "attention_mask": mask.expand(4, 1, 2, 9)[:, :, :1],
                              "use_cache": True, "return_dict": True})  # same shape, other strides
    masks = {"full_attention": mask}
    assert _signature({"attention_mask": masks}) == _signature({"attention_mask": {"full_attention": ~mask}})
    unmasked = _signature({"attention_mask": {"full_attention": None}})  # a prompt without padding
    assert unmasked is not None and unmasked != _signature({"attention_mask": masks})


def test_signature_refuses_what_a_graph_cannot_hold():
    from transformers.cache_utils import DynamicCache
    assert _signature({"past_key_values": DynamicCache()}) is None
    assert _signature({"input_ids": torch.zeros(1, 1), "extra": [1, 2]}) is None
    assert _signature({"attention_mask": {"full_attention": [1]}}) is None
    assert _signature({"input_ids": torch.zeros(1, 1), "output_hidden_states": True}) is None
    assert _signature({"input_ids": torch.zeros(1, 1), "output_attentions": False}) is not None


def test_nothing_is_installed_off_cuda(tiny_dir):
    model, tokenizer = _model(tiny_dir)
    with graphed_decode(model) as calls:
        assert "get_compiled_call" not in vars(model)
    assert calls == []
    engine = HFEngine(model, tokenizer, cache="static_compiled", sampler="fused")
    engine.generate(EVEN, 2, SamplingConfig(max_tokens=4, temperature=0.0))
    assert engine.decode_calls == []


def _generate(engine, prompts, n, sampling, graphed):
    engine.graphed_decode = graphed
    groups = engine.generate(prompts, n, sampling)
    return [(c.token_ids, c.logprobs) for g in groups for c in g.completions], list(engine.decode_calls)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("gqa", [True, False])
def test_graphed_generations_equal_the_compiled_call(tiny_dir, gqa):
    """Greedy float32 generations and their log-probs: the graphs against transformers' compiled call,
    for two prompt sets (padded, one-length) and batch sizes, each call capturing its own graph."""
    model, tokenizer = _model(tiny_dir, "cuda")
    engine = HFEngine(model, tokenizer, cache="static_compiled", gqa_decode=gqa, sampler="fused")
    engine.keep_decode_state = False  # a new cache and graph per call (kept ones: the last test)
    sampling = SamplingConfig(max_tokens=12, temperature=0.0)
    for prompts, n in ((PADDED, 2), (EVEN, 4), (PADDED, 2)):
        expected, none = _generate(engine, prompts, n, sampling, graphed=False)
        got, calls = _generate(engine, prompts, n, sampling, graphed=True)
        assert none == [] and len(calls) == 1
        (call,) = calls
        assert call.captures == 1 and call.uncaptured == 0 and call.replays >= 8, vars(call)
        assert [ids for ids, _ in got] == [ids for ids, _ in expected]
        for (_, a), (_, b) in zip(got, expected):
            torch.testing.assert_close(torch.tensor(a), torch.tensor(b), rtol=1e-4, atol=1e-4)


def _prefill_and_decode(calls):
    """(the prompt forward's call or None, the decode step's call) of one `generate` call."""
    prefill = [call for call in calls if call.positions is not None and call.positions > 1]
    decode = [call for call in calls if call.positions == 1]
    assert len(prefill) <= 1 and len(decode) == 1, [vars(call) for call in calls]
    return (prefill[0] if prefill else None), decode[0]


def _logprob_error(model, groups) -> float:
    """The largest gap between a completion's recorded sampling log-probs and the model's own, recomputed
    over the whole sequence (eager, no cache)."""
    worst = 0.0
    for group in groups:
        for completion in group.completions:
            start = len(group.prompt_ids)
            ids = torch.tensor([list(group.prompt_ids) + list(completion.token_ids)], device=model.device)
            with torch.no_grad():
                logits = model(ids).logits[0, start - 1:-1].float()
            own = torch.log_softmax(logits, dim=-1).gather(1, ids[0, start:, None]).squeeze(1).cpu()
            worst = max(worst, (own - torch.tensor(completion.logprobs)).abs().max().item())
    return worst


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_graphed_sampling_in_bf16_records_the_models_logprobs(tiny_dir):
    """Seeded sampling in bf16 (where near-ties make draws differ between any two kernels): the first call
    captures the prompt's forward and the decode step, the second replays both, and the recorded log-probs are the model's for the drawn tokens, as close as those
    of transformers' compiled call are."""
    model, tokenizer = _model(tiny_dir, "cuda", torch.bfloat16)
    engine = HFEngine(model, tokenizer, cache="static_compiled", gqa_decode=True, sampler="fused", merged=True)
    sampling = SamplingConfig(max_tokens=16, temperature=1.0, seed=3)
    engine.graphed_decode = False
    reference = _logprob_error(model, engine.generate(PADDED, 4, sampling))
    engine.graphed_decode = True
    for captures in (2, 0):  # the prompt's forward and the decode step, then both kept
        groups = engine.generate(PADDED, 4, sampling)
        prefill, decode = _prefill_and_decode(engine.decode_calls)
        assert prefill.captures + decode.captures == captures and decode.replays >= 12, vars(decode)
        assert prefill.uncaptured == decode.uncaptured == 0
        error = _logprob_error(model, groups)
        assert error <= 2 * reference + 0.02, (error, reference)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_kept_graphs_are_replayed_by_later_calls_and_follow_the_weights(tiny_dir):
    """With the engine's kept caches, the second call of a shape replays the first call's graphs (the
    prompt's forward and the decode step) without a capture, generating what transformers' compiled call
    does; an in-place change of the weights (an optimizer step) is seen by the kept graphs; weights in
    new tensors or another batch size make new captures; graphs of caches no longer kept are dropped."""
    model, tokenizer = _model(tiny_dir, "cuda")
    kwargs = dict(cache="static_compiled", gqa_decode=True, sampler="fused", merged=True, decode_kernel="split_kv")
    kept, reference = HFEngine(model, tokenizer, **kwargs), HFEngine(model, tokenizer, **kwargs)
    reference.graphed_decode = reference.keep_decode_state = False
    sampling = SamplingConfig(max_tokens=12, temperature=0.0)

    def check(prompts, n, captures, replays=8):
        expected, _ = _generate(reference, prompts, n, sampling, graphed=False)
        got, calls = _generate(kept, prompts, n, sampling, graphed=True)
        prefill, decode = _prefill_and_decode(calls)  # the prompt's forward is graphed too (one chunk)
        assert prefill.captures + decode.captures == captures and decode.replays >= replays, vars(decode)
        assert prefill.uncaptured == decode.uncaptured == 0 and prefill.replays == (captures == 0)
        assert [ids for ids, _ in got] == [ids for ids, _ in expected]
        for (_, a), (_, b) in zip(got, expected):
            torch.testing.assert_close(torch.tensor(a), torch.tensor(b), rtol=1e-4, atol=1e-4)
        return [ids for ids, _ in got]

    first = check(PADDED, 2, captures=2)  # the prompt's forward and the decode step
    assert check(PADDED, 2, captures=0) == first
    with torch.no_grad():  # in place, as an optimizer step: the kept graphs read the new values
        for parameter in model.parameters():
            parameter.mul_(1.5)
    assert check(PADDED, 2, captures=0) != first
    norm = model.model.norm
    norm.weight = torch.nn.Parameter(norm.weight.detach() * 0.5)  # a new tensor: new graphs
    check(PADDED, 2, captures=2)
    assert len(kept._decode_graphs) == 2
    check(EVEN, 4, captures=2)  # 12 rows: another cache, other graphs; all kept
    check(PADDED, 2, captures=0)
    assert len(kept._decode_graphs) == 4
    check(EVEN, 1, captures=2)  # a third batch size: the least recently used cache (12 rows) and its graphs go
    assert sorted(kept.static_caches.by_batch) == [3, 6] and len(kept._decode_graphs) == 4
    # 64 tokens: no padding, no prompt mask (the scaled model may now draw EOS at once: any replays)
    unpadded = ["0123456789" * 6 + "abcd", "9876543210" * 6 + "dcba"]
    check(unpadded, 2, captures=2, replays=0)
    check(unpadded, 2, captures=0, replays=0)
    kept.graphed_prefill_tokens = 0  # the prompt's forward eagerly: one call, the decode step's graph kept
    got, calls = _generate(kept, unpadded, 2, sampling, graphed=True)
    assert len(calls) == 1 and calls[0].captures == calls[0].uncaptured == 0
    # every call of groups of 2 or 4 ran its prompt's forward on one row per group (shared_prefill.py),
    # graphed through a view of the kept cache, and eagerly in the last call
    assert kept.static_caches.shared_prefills == 9
