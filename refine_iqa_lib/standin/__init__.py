"""The offline stand-in for Qwen2.5-VL-7B-Instruct and its world (not part of the paper).

Everything that exists only so that the embedded scale can run without a hub lives here: the
pictures it is built from (:mod:`~refine_iqa_lib.standin.world`), and, as the package grows, the
stand-in's model, its pre-training and its probes. The paper-scale path never imports it.
"""
