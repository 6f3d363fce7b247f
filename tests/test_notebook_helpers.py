"""The evaluation notebooks' first cells as library calls (refine_iqa_lib.notebook)."""
import logging

import pandas as pd

from refine_iqa_lib import notebook
from refine_iqa_lib.config import load_config
from refine_iqa_lib.io import repo_relative


def test_eval_config_logs_the_header_and_widens_text_columns(caplog):
    with pd.option_context("display.max_colwidth", 50), caplog.at_level(logging.INFO, logger="refine_iqa_lib.notebook"):
        cfg = notebook.eval_config("smoke", {"eval.max_samples": 0})
        assert pd.get_option("display.max_colwidth") == 120
    assert cfg.profile == "smoke" and cfg.eval.max_samples == 0
    assert caplog.messages == ["profile smoke: model tiny, eval batch 4, max_samples all, max_new_tokens 16"]


def test_show_models_lists_every_name_and_returns_those_with_weights(tmp_path, tiny_model_dir, capsys):
    cfg = load_config("smoke", {"paths.work_dir": str(tmp_path), "warmup.enabled": False})
    models = notebook.show_models(cfg)                  # base = the stand-in itself; no run trained yet
    assert list(models) == ["base"] and models["base"] == tiny_model_dir
    shown = capsys.readouterr().out
    assert "s1" in shown and "s2" in shown and "False" in shown
    table = notebook.models_table(cfg, ["base", "s2"], models)
    assert table.to_dict("list") == {"model": ["base", "s2"], "weights": [repo_relative(tiny_model_dir), str(tmp_path / "runs" / "stage2")],
                                     "available": [True, False]}
