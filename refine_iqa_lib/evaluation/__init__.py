"""Evaluation: correlation metrics, the paper's tables regenerated beside ours, and evaluators.

``metrics`` (SRCC / PLCC over scipy) and ``tables`` (Tables 1-6 from ``results/``) live here;
the evaluators that write the result JSONs ``tables`` reads are added beside them.
"""
from refine_iqa_lib.evaluation.metrics import correlation_report, plcc, srcc

__all__ = ["correlation_report", "plcc", "srcc"]
