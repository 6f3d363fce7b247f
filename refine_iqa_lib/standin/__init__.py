"""The offline stand-in for Qwen2.5-VL-7B-Instruct and its world (not part of the paper).

Everything that exists only so that the embedded scale can run without a hub lives here:

* its pictures: :mod:`~refine_iqa_lib.standin.world` (the picture catalogue) and
  :mod:`~refine_iqa_lib.standin.scenes` (the embedded perception source);
* its data sets, in the layouts of the paper's: :mod:`~refine_iqa_lib.standin.scoring_set` (a
  KonIQ-layout set with a synthetic MOS, :mod:`~refine_iqa_lib.standin.fidelity`),
  :mod:`~refine_iqa_lib.standin.qbench_set` (a Q-Bench-layout set) and
  :mod:`~refine_iqa_lib.standin.perceive` (pixel statistics said in words, for think texts);
* the model: :mod:`~refine_iqa_lib.standin.model` (a tiny Qwen2.5-VL built locally);
* its pre-training: :mod:`~refine_iqa_lib.standin.pretrain_data` (the samples),
  :mod:`~refine_iqa_lib.standin.pretraining` (the warm-up stage) and
  :mod:`~refine_iqa_lib.standin.prebuilt` (the committed base, adopted on an exact key;
  ``python -m refine_iqa_lib.standin`` regenerates it);
* its instruments: :mod:`~refine_iqa_lib.standin.probe` (what its vision tower sees) and
  :mod:`~refine_iqa_lib.standin.informativeness` (whether its base can test the claims).

Core modules import it only inside functions: where a configuration names the stand-in
(``model.path: tiny``, ``scoring.roots.<name>: embedded``, ``perception.source: embedded``, the
``warmup`` stage) and for the distortion grid's photograph.
"""
