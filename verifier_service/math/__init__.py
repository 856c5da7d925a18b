"""Math answer checking: extraction from a response, normalisation, sympy equivalence.

`check(gold, response, options)` is the one verb. It never raises for bad input:
every outcome is a MathVerdict with an explicit status. It has no deadline of its
own: callers run it in a killable worker process (verifier_service.workers).
"""

from .grader import check
from .types import DEFAULT_EXTRACTORS, Extractor, MathOptions, MathStatus, MathVerdict

__all__ = ["check", "Extractor", "MathOptions", "MathStatus", "MathVerdict", "DEFAULT_EXTRACTORS"]
