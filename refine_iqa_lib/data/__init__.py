"""Data: embedded photographs, the Refine-Perception pipeline, Stage-1 samples and IQA adapters."""
