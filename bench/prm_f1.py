"""First-error F1 of a trained PRM directory on the synthetic task's held-out chains, by corruption kind.

    python bench/prm_f1.py runs/prm_demo/final/model [--config configs/prm_demo.yaml] [--examples 1024]

The chains are the PRM config's held-out split (trainer/prm.py's: `data.seed`, the difficulty knobs,
`data.error_fraction`), `--examples` of them (the config's `eval.examples` by default, i.e. the training
run's own evaluation set); they are scored by the service's offline scorer (`PRMScorer`: the rendering,
batching and forward pass of `verirl serve --prm`). Prints F1 and its parts (trainer.prm.first_error_f1 at
the config's `eval.threshold`) and the first-error accuracy per corruption kind; `--out` writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

from tasks.corruptions import step_chains
from trainer.prm import _synthetic_problems, first_error_f1, predicted_first_error
from trainer.prm_config import load_prm_config
from verifier_service.prm import PRMScorer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model_dir")
    p.add_argument("--config", default="configs/prm_demo.yaml")
    p.add_argument("--examples", type=int, default=0, help="held-out chains (default: the config's eval.examples)")
    p.add_argument("--out", default="")
    a = p.parse_args()
    cfg = load_prm_config(a.config)
    d = cfg.data
    chains = step_chains(_synthetic_problems(cfg, a.examples or cfg.eval.examples, "heldout"), seed=d.seed,
                         error_fraction=d.error_fraction, kinds=d.error_kinds)
    scorer = PRMScorer(a.model_dir, device="cpu")
    scores = scorer.score_many([(c.problem, list(c.steps)) for c in chains])
    predicted = [predicted_first_error(s, cfg.eval.threshold) for s in scores]
    result = first_error_f1(predicted, [c.first_error for c in chains])
    by_kind: dict[str, list[bool]] = defaultdict(list)
    for c, guess in zip(chains, predicted):
        by_kind["correct chains" if c.first_error == -1 else c.id.rsplit("-", 1)[1]].append(guess == c.first_error)
    result["by_kind"] = {k: {"accuracy": sum(v) / len(v), "chains": len(v)} for k, v in sorted(by_kind.items())}
    print(json.dumps(result, indent=2))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
