"""Training: the GRPO trainer (Stage-1 / Stage-2), the stand-in's SFT warm-up, datasets, metrics.

* :mod:`.trainer` - :class:`~refine_iqa_lib.training.trainer.RefineGRPOTrainer` (TRL's
  ``GRPOTrainer`` with Eq. 1-6) and :class:`~refine_iqa_lib.training.trainer.RefineSettings`;
* :mod:`.data` - the TRL datasets of both stages;
* :mod:`.warmup` - the supervised warm-up of the offline stand-in (not in the paper);
* :mod:`.metrics` - the run folder's ``metrics.jsonl`` and its readers.

The command line is :mod:`refine_iqa_lib.training.run`; its Python entry point ``run_stage``.
"""
