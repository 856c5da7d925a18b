"""Process reward model (PRM) step scoring: the model, its process, the batcher, an offline scorer.

Nothing here imports torch at import time: `model.py` (the only torch code) is loaded in the PRM
process, or by a `PRMScorer` in the caller's process. Nothing here imports grpc.
"""

from .aggregate import AGGREGATE, aggregate, first_error
from .config import PRMConfig, resolve_format
from .scorer import PRMScorer

__all__ = ["PRMConfig", "PRMScorer", "resolve_format", "AGGREGATE", "aggregate", "first_error"]
