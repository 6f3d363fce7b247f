"""Training: the GRPO trainer (Stage-1 / Stage-2), datasets, metrics, one stage as a list of steps.

* :mod:`.trainer` - :class:`~refine_iqa_lib.training.trainer.RefineGRPOTrainer` (TRL's
  ``GRPOTrainer`` with Eq. 1-6) and :class:`~refine_iqa_lib.training.trainer.RefineSettings`;
* :mod:`.data` - the TRL datasets of both stages;
* the offline stand-in's warm-up (its pre-training, not in the paper) is
  :mod:`refine_iqa_lib.standin.pretraining`, run as the stage ``warmup`` by :mod:`.run`;
* :mod:`.metrics` - the run folder's ``metrics.jsonl`` and its readers.
* :mod:`.run` - one stage as a list of steps (:func:`~refine_iqa_lib.training.run.run_stage`),
  the TRL settings mapping, resume checks;
* :mod:`.cli` - the training command line (``python -m refine_iqa_lib.training.cli``);
* :mod:`.launch` - ``accelerate launch`` / ``torchrun`` jobs from a notebook or a shell.
"""
