"""Evaluation: correlation metrics, the evaluators, and the paper's tables regenerated beside ours.

``metrics`` (SRCC / PLCC over scipy); ``results`` (the weights a model name means, the result
files every evaluator writes); the evaluators ``scoring_eval`` (Table 3), ``perception``
(Tables 1-2), ``qbench`` (Table 4), ``ablations`` (Tables 5-6) and ``heldout``; ``tables``
(Tables 1-6 from the result files, beside the paper's numbers); ``statistics``, ``claims``,
``figures``, ``leaks``, ``probe``, ``informativeness``.
"""
from refine_iqa_lib.evaluation.metrics import correlation_report, plcc, srcc

__all__ = ["correlation_report", "plcc", "srcc"]
