"""Write verifier_service/data/steps_samples.jsonl: `verirl eval` lines of kind "steps" with labels and groups.

Usage: python scripts/make_steps_samples.py [OUT]   (default: the bundled file)

Each group stands for N = 8 sampled solutions of one synthetic problem (tasks/synthetic.py): some are the
reference chain (a few with a \\boxed{} answer line instead of "#### x", so that voting has to compare
answers through the math checker), the rest are corruptions (tasks/corruptions.py) whose first error is
known exactly. In some groups one wrong chain appears three times, as repeated samples do, so majority
vote is fooled there while a PRM need not be. tests/test_eval_steps.py regenerates the file and compares.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from tasks.corruptions import KINDS, corrupt
from tasks.stepdata import to_eval_line
from tasks.synthetic import chain_of, format_answer, generate, reference_chain

OUT = Path(__file__).resolve().parent.parent / "verifier_service" / "data" / "steps_samples.jsonl"
GROUPS, GROUP_SIZE, SEED = 12, 8, 7


def _wrong(problem, rng: random.Random):
    n = len(chain_of(problem).ops)
    while True:
        kind = rng.choice(KINDS)
        try:
            return corrupt(problem, n if kind == "answer" else rng.randrange(n), kind, rng)
        except ValueError:
            continue


def lines() -> list[dict]:
    out = []
    for g, problem in enumerate(generate(GROUPS, split="heldout", seed=SEED)):
        rng = random.Random(f"steps-samples:{g}")
        n_correct = rng.choice((1, 2, 3, 4))
        chains = []
        for j in range(n_correct):
            chain = to_eval_line(reference_chain(problem))
            if j % 2:  # the same answer written another way
                chain["steps"][-1] = format_answer(int(problem.gold), "boxed")
            chains.append(chain)
        wrong = [to_eval_line(_wrong(problem, rng)) for _ in range(GROUP_SIZE - n_correct)]
        if g % 3 == 0 and len(wrong) >= 3:  # one wrong chain sampled three times
            wrong[1:3] = [dict(wrong[0]), dict(wrong[0])]
        chains += wrong
        rng.shuffle(chains)
        for j, chain in enumerate(chains):
            out.append({**chain, "id": f"{problem.id}-r{j}", "group": problem.id})
    return out


def main(path: Path = OUT) -> None:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines()))
    print(f"wrote {path}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
