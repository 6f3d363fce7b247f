"""The paper's method: Eq. 1-8 as pure functions, the teacher forcing behind PD, Eq. 8 scoring.

* :mod:`.rewards` - answer (Eq. 1), format, PD (Eq. 2-4), final reward (Eq. 5), Stage-1 rewards,
  and the TRL reward registry;
* :mod:`.advantages` - the modified advantage (Eq. 6) and plain GRPO;
* :mod:`.teacher_forcing` - ground-truth digit probabilities of a policy (what Eq. 2 reads) and
  the trainer's PD reward;
* :mod:`.scoring` - Eq. 8's expected score and scoring images with a policy;
* :mod:`.explorer` - the ipywidgets reward explorer (notebook 02) over the pure functions.
"""
