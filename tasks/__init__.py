"""Tasks: problems with their gold answers or tests, prompts, and the synthetic multi-step family.

A leaf package: it imports nothing else of verirl, so the verifier service and the trainer can both
depend on it. Answer extraction (`tasks.extract`) and code-block extraction (`tasks.code_blocks`) live
here too but are imported from their own modules.
"""

from __future__ import annotations

from tasks.datasets import (DATA_ENV, MBPP_SPLITS, data_dir, data_file, gsm8k_gold, load_gsm8k, load_humaneval,
                            load_math, load_math500, load_mbpp)
from tasks.files import DatasetError, load_hf, load_jsonl, load_parquet, read_jsonl, rows_to_problems, write_jsonl
from tasks.prompts import (PROMPTS, bare_prompt, build_prompt, chat_messages, code_prompt, default_style,
                           format_prompt, math_prompt, render_chat, steps_prompt, synthetic_prompt)
from tasks.stepdata import (from_trl, load_prm800k, load_processbench, split_steps, to_eval_line, to_processbench,
                            to_trl, write_processbench)
from tasks.corruptions import CORRUPTIONS, KINDS, corrupt, prm_records, step_chains
from tasks.synthetic import (Chain, SyntheticConfig, chain_from_steps, chain_of, check_steps, first_error,
                             format_answer, format_step, generate, parse_step, reference_chain, reference_steps,
                             split_of, split_solution)
from tasks.types import CHECK_CODE, CHECK_MATH, CHECK_STEPS, CHECKS, Problem, StepChain

__all__ = [
    # types
    "Problem", "StepChain", "CHECK_MATH", "CHECK_CODE", "CHECK_STEPS", "CHECKS",
    # benchmark loaders
    "DATA_ENV", "MBPP_SPLITS", "data_dir", "data_file", "gsm8k_gold", "load_gsm8k", "load_math", "load_math500",
    "load_humaneval", "load_mbpp",
    # generic loaders
    "DatasetError", "read_jsonl", "write_jsonl", "rows_to_problems", "load_jsonl", "load_parquet", "load_hf",
    # prompts
    "PROMPTS", "math_prompt", "code_prompt", "steps_prompt", "synthetic_prompt", "bare_prompt", "default_style",
    "build_prompt", "chat_messages", "render_chat", "format_prompt",
    # step-labelled data
    "split_steps", "load_processbench", "write_processbench", "to_processbench", "to_eval_line", "to_trl",
    "from_trl", "load_prm800k",
    # the synthetic family
    "SyntheticConfig", "Chain", "generate", "split_of", "chain_of", "reference_steps", "reference_chain",
    "check_steps", "parse_step", "first_error", "chain_from_steps", "split_solution", "format_step",
    "format_answer",
    # wrong chains with exact labels
    "corrupt", "step_chains", "prm_records", "CORRUPTIONS", "KINDS",
]
