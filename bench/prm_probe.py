"""PRM probes on the synthetic task: what the recipe lacks, tried in one loop (docs/benchmarks.md,
"PRM on the synthetic task", the rows beyond the shipped config).

The data, the tag loss and the evaluation are trainer/prm.py's (configs/prm_demo.yaml's chains and
held-out split, exact labels, first-error F1); two things the recipe does not do can be added:

  --aux W     an auxiliary next-token loss, weight W: cross-entropy on the tokens of the steps labelled
              right (the problem text and the tags have none), through an LM head on the last hidden
              state (from the backbone's lm_head with --init, else fresh). The recipe's loss is the tag
              loss alone; this probe asks whether a dense target helps the tag head.
  --stack K   K fresh transformer layers on top of the backbone (its layers, embeddings and final norm
              kept): the backbone's next-token features become inputs of later layers.

    python bench/prm_probe.py [--init POLICY_DIR] [--aux 1.0] [--stack 2] [--layers 4] [--kinds answer]

It prints F1, its parts and the eval loss every --every steps. Torch uses one thread unless --threads
says otherwise (on a shared 2-core machine one thread ran ~4x faster than two under load).
"""

from __future__ import annotations

import argparse
import math
import random
import time

import torch

from tasks.prm_format import tokenize
from trainer import prm
from trainer.prm_config import load_prm_config
from trainer.tiny import TinyConfig, build_tiny


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="configs/prm_demo.yaml")
    p.add_argument("--init", default="", help="a causal LM directory (e.g. a policy); default: a fresh tiny model")
    p.add_argument("--layers", type=int, default=2, help="tiny model layers (without --init)")
    p.add_argument("--hidden", type=int, default=128, help="tiny model width (without --init)")
    p.add_argument("--stack", type=int, default=0, help="fresh layers stacked on the backbone")
    p.add_argument("--aux", type=float, default=0.0, help="weight of the next-token loss on right steps")
    p.add_argument("--kinds", default="", help="corruption kinds, comma-separated (default: the config's)")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--every", type=int, default=200)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="/tmp/prm_probe", help="where the fresh tiny model is built")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForTokenClassification, AutoTokenizer

    cfg = load_prm_config(a.config, [f"data.error_kinds=[{a.kinds}]"] if a.kinds else [])
    source = a.init or str(build_tiny(a.out, config=TinyConfig(num_hidden_layers=a.layers, hidden_size=a.hidden,
                                                                intermediate_size=2 * a.hidden)))
    tok = AutoTokenizer.from_pretrained(source)
    model = AutoModelForTokenClassification.from_pretrained(source, num_labels=2)
    if a.stack:  # the same model with K more layers; the backbone's weights copied, the new layers fresh
        c = AutoConfig.from_pretrained(source, num_labels=2)
        c.num_hidden_layers += a.stack
        c.layer_types = ["full_attention"] * c.num_hidden_layers
        stacked = AutoModelForTokenClassification.from_config(c)
        stacked.load_state_dict(model.state_dict(), strict=False)
        model = stacked
    model.config.pad_token_id = tok.pad_token_id
    vocab = model.config.vocab_size
    lm_head = torch.nn.Linear(model.config.hidden_size, vocab, bias=False)
    if a.init:
        lm_head.weight.data.copy_(AutoModelForCausalLM.from_pretrained(a.init).lm_head.weight.data)

    fmt = prm.prm_format(cfg)
    train_records, eval_records, _ = prm.load_records(cfg, None)

    def encode(record: dict) -> tuple[prm.Encoded, list[int]]:
        """The chain and its next-token targets: the step tokens of right steps, -100 elsewhere."""
        enc, _ = prm.encode(record, tok, fmt, "error")
        targets = [-100] * len(tokenize(tok, record["prompt"]))
        for step, y in zip(record["completions"], record["labels"]):
            piece = tokenize(tok, fmt.step_separator + step)
            targets += [-100] + (piece[1:] if y >= 0.5 else [-100] * (len(piece) - 1)) + [-100] * len(
                tokenize(tok, fmt.step_tag))
        return enc, targets

    train = [encode(r) for r in train_records]
    held = [prm.encode(r, tok, fmt, "error")[0] for r in eval_records]
    params = list(model.parameters()) + list(lm_head.parameters())
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(  # 20 warm-up steps, then cosine (the recipe's schedule)
        opt, lambda s: min(1.0, (s + 1) / 20) * 0.5 * (1 + math.cos(math.pi * s / a.steps)))
    rng, order, t0 = random.Random(0), [], time.monotonic()
    for step in range(1, a.steps + 1):
        if len(order) < a.batch:
            order += rng.sample(range(len(train)), len(train))
        part, order = [train[i] for i in order[:a.batch]], order[a.batch:]
        batch = prm.collate([e for e, _ in part], tok.pad_token_id)
        lm_targets = torch.full(batch.input_ids.shape, -100, dtype=torch.long)   # [B, L]
        for i, (_, t) in enumerate(part):
            lm_targets[i, :len(t)] = torch.tensor(t)
        h = model.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state  # [B, L, H]
        logp = model.score(model.dropout(h)).float().log_softmax(-1)             # [B, L, 2]
        at = batch.targets != prm.NO_TARGET
        y, picked = batch.targets[at], logp[at]
        tag = -(y * picked[:, prm.CORRECT_LABEL] + (1 - y) * picked[:, 1 - prm.CORRECT_LABEL]).mean()
        loss, lm = tag, torch.zeros(())
        if a.aux > 0:
            lm = torch.nn.functional.cross_entropy(lm_head(h[:, :-1]).reshape(-1, vocab), lm_targets[:, 1:].reshape(-1),
                                                   ignore_index=-100)
            loss = tag + a.aux * lm
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if step % a.every == 0 or step == a.steps:
            r = prm.evaluate(model, held, tok.pad_token_id, 64, "cpu", cfg.eval.threshold)
            print(f"step {step} ({time.monotonic() - t0:.0f}s): tag loss {float(tag.detach()):.3f}, "
                  f"next-token {float(lm.detach()):.3f}; "
                  f"held-out F1 {r['f1']:.3f} (erroneous {r['acc_erroneous']:.3f}, correct {r['acc_correct']:.3f}), "
                  f"eval loss {r['loss']:.3f}", flush=True)


if __name__ == "__main__":
    main()
