"""Training: the GRPO trainer (Stage-1 / Stage-2), the stand-in's SFT warm-up, datasets, metrics.

* :mod:`.trainer` - :class:`~refine_iqa_lib.training.trainer.RefineGRPOTrainer` (TRL's
  ``GRPOTrainer`` with Eq. 1-6) and :class:`~refine_iqa_lib.training.trainer.RefineSettings`;
* :mod:`.data` - the TRL datasets of both stages;
* :mod:`.warmup` - the supervised warm-up of the offline stand-in (not in the paper);
* :mod:`.metrics` - the run folder's ``metrics.jsonl`` and its readers.
* :mod:`.run` - one stage as a list of steps (:func:`~refine_iqa_lib.training.run.run_stage`),
  the TRL settings mapping, resume checks;
* :mod:`.cli` - the training command line (``python -m refine_iqa_lib.training.cli``);
* :mod:`.launch` - ``accelerate launch`` / ``torchrun`` jobs from a notebook or a shell.
"""
