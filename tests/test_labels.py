"""Your own labels: data.iqa.load_labels (columns as load_iqa, rescale, every bad-row error),
scoring.custom in the config, load_scoring_split's dispatch, evaluation, `refine-iqa score --labels`
and a Stage-2 dry run on a generated CSV."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from refine_iqa_lib.config import ConfigError, load_config
from refine_iqa_lib.data.iqa import load_iqa, load_labels
from refine_iqa_lib.data.scoring_data import default_split, load_scoring_split
from refine_iqa_lib.standin.scoring_set import build_embedded_scoring_set


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    """A generated labels CSV on a 1-10 scale with a split column, and its 12 pictures."""
    root = tmp_path_factory.mktemp("own_labels")
    (root / "pics").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        level = i % 6
        img = np.clip(rng.normal(200 - 30 * level, 10, (56, 56, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(root / "pics" / f"p{i:02d}.png")
        rows.append({"path": f"p{i:02d}.png", "score": 10 - 1.5 * level, "sd": 0.5,
                     "set": ["training", "training", "test"][i % 3]})
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    return root


def _csv(path, text):
    path.write_text(text)
    return path


def test_columns_match_load_iqa_and_mos_is_rescaled(own, smoke_cfg):
    df = load_labels(own / "labels.csv", image_dir="pics", image_column="path", mos_column="score",
                     mos_range=(1, 10), split_column="set", std_column="sd")
    koniq = load_iqa("koniq", build_embedded_scoring_set(smoke_cfg), split="test")
    assert list(df.columns[:5]) == list(koniq.columns[:5]) == ["dataset", "image", "mos_raw", "mos", "split"]
    assert df["dataset"].unique().tolist() == ["labels"] and len(df) == 12
    assert df["image"].map(lambda p: p.startswith(str(own / "pics"))).all()
    assert df["mos"].max() == pytest.approx(4.99) and df["mos"].min() >= 0
    assert np.allclose(df["mos"], np.clip(5 * (df["mos_raw"] - 1) / 9, 0, 4.99))
    assert set(df["split"]) == {"train", "test"}
    assert np.allclose(df["mos_std"], 0.5 * 5 / 9)
    flipped = load_labels(own / "labels.csv", image_dir="pics", image_column="path", mos_column="score",
                          mos_range=(1, 10), higher_is_better=False)
    assert np.allclose(flipped["mos"], np.clip(5 * (10 - flipped["mos_raw"]) / 9, 0, 4.99))
    assert set(flipped["split"]) == {"all"}


def test_jsonl_labels(own, tmp_path):
    lines = [json.dumps({"image": str(own / "pics" / "p00.png"), "mos": 70}), "",
             json.dumps({"image": str(own / "pics" / "p01.png"), "mos": 35.5})]
    path = tmp_path / "l.jsonl"
    path.write_text("\n".join(lines) + "\n")
    df = load_labels(path, mos_range=(0, 100))
    assert df["mos"].tolist() == pytest.approx([3.5, 1.775]) and df["mos_raw"].tolist() == [70.0, 35.5]


@pytest.mark.parametrize("text, kwargs, message", [
    ("image,mos\np00.png,5\np01.png,abc\n", {}, r"labels\.csv, line 3: mos = 'abc'; expected a number in the declared range \[1\.0, 10\.0\]"),
    ("image,mos\np00.png,5\np01.png,\n", {}, r"line 3: mos = ''; expected a number"),
    ("image,mos\np00.png,11\n", {}, r"line 2: mos = '11'; expected a number in the declared range \[1\.0, 10\.0\]"),
    ("image,mos\np00.png,5\nnope.png,5\n", {}, r"line 3: image 'nope\.png' not found at .*nope\.png; expected an existing image file"),
    ("image,mos\n,5\n", {}, r"line 2: image = ''; expected an image path"),
    ("image,mos\np00.png,5\np00.png,6\n", {}, r"line 3: image 'p00\.png' already labelled on line 2"),
    ("file,mos\np00.png,5\n", {}, r"line 2: no column\(s\) \['image'\]; found \['file', 'mos'\]"),
    ("image,mos,set\np00.png,5,holdout\n", {"split_column": "set"}, r"line 2: set = 'holdout'; expected one of train, val, test"),
    ("image,mos,sd\np00.png,5,-1\n", {"std_column": "sd"}, r"line 2: sd = '-1'; expected a non-negative number"),
])
def test_bad_rows_name_the_file_line_and_expectation(own, text, kwargs, message):
    path = _csv(own / "pics" / "labels.csv", text)
    with pytest.raises(ValueError, match=message) as e:
        load_labels(path, mos_range=(1, 10), **kwargs)
    assert str(path) in str(e.value)


def test_file_level_errors(own, tmp_path):
    with pytest.raises(FileNotFoundError, match="labels file"):
        load_labels(tmp_path / "none.csv", mos_range=(0, 1))
    path = _csv(tmp_path / "l.csv", "image,mos\n")
    with pytest.raises(ValueError, match="declare the MOS range"):
        load_labels(path)
    with pytest.raises(ValueError, match="expected lo < hi"):
        load_labels(path, mos_range=(5, 1))
    with pytest.raises(ValueError, match="no label rows"):
        load_labels(path, mos_range=(0, 1))
    bad = tmp_path / "l.jsonl"
    bad.write_text('{"image": "a.png", "mos": 1}\n{oops\n')
    with pytest.raises(ValueError, match=r"l\.jsonl, line 2: not a JSON object"):
        load_labels(bad, mos_range=(0, 1))
    with pytest.raises(ValueError, match="must be .csv, .tsv or .jsonl"):
        load_labels(_csv(tmp_path / "l.xlsx", "x"), mos_range=(0, 1))


def _custom(own, **extra):
    return {"labels": str(own / "labels.csv"), "image_dir": str(own / "pics"), "image_column": "path",
            "mos_column": "score", "range": [1, 10], "split_column": "set", **extra}


def test_config_section_and_dispatch(own, tmp_path):
    cfg = load_config("smoke", {"scoring.custom": {"mine": _custom(own)}, "paths.work_dir": str(tmp_path)})
    assert default_split(cfg, "mine") == "test"
    train, test = load_scoring_split(cfg, "mine", "train"), load_scoring_split(cfg, "mine")
    assert len(train) == 8 and len(test) == 4 and set(train["dataset"]) == {"mine"}
    assert not set(train["image"]) & set(test["image"])
    with pytest.raises(ConfigError, match=r"scoring\.custom\.mine\.range = \[3\]: expected \[lo, hi\]"):
        load_config("smoke", {"scoring.custom": {"mine": _custom(own, range=[3])}})
    with pytest.raises(ConfigError, match=r"scoring\.custom\.mine: unknown key\(s\) \['mos_col'\]"):
        load_config("smoke", {"scoring.custom": {"mine": _custom(own, mos_col="x")}})
    with pytest.raises(ConfigError, match=r"scoring\.custom\.mine\.labels"):
        load_config("smoke", {"scoring.custom": {"mine": {"range": [0, 1]}}})
    with pytest.raises(ConfigError, match="also in scoring.roots"):
        load_config("smoke", {"scoring.custom": {"koniq": _custom(own)}})
    no_split = load_config("smoke", {"scoring.custom": {"mine": _custom(own, split_column="")}})
    assert default_split(no_split, "mine") == "all" and len(load_scoring_split(no_split, "mine", "train")) == 12


def test_evaluate_on_own_labels_and_score_cli(own, tmp_path, tiny_policy, tiny_model_dir, capsys):
    from refine_iqa_lib import cli
    from refine_iqa_lib.evaluation.scoring_eval import evaluate_scoring

    cfg = load_config("smoke", {"scoring.custom": {"mine": _custom(own)}, "paths.work_dir": str(tmp_path / "w"),
                                "paths.results_dir": str(tmp_path / "r"), "warmup.enabled": False})
    (rec,) = evaluate_scoring(cfg, "base", datasets=["mine"], modes=["no_think"], methods=["prob"], loaded=tiny_policy)
    assert rec["dataset"] == "mine" and rec["split"] == "test" and rec["n"] == 4 and math.isfinite(rec["plcc"])
    code = cli.main(["score", "--model", str(tiny_model_dir), "--labels", str(own / "labels.csv"), "--image-column",
                     "path", "--image-dir", str(own / "pics"), "--mos-column", "score", "--mos-range", "1", "10",
                     "--out", str(tmp_path / "s.csv"), "--no-progress"])
    assert code == 0
    assert "SRCC" in capsys.readouterr().out and len(pd.read_csv(tmp_path / "s.csv")) == 12


def test_stage2_dry_run_on_own_labels(own, tmp_path, capsys):
    from refine_iqa_lib.training.cli import main

    sets = ["--set", f"scoring.custom={json.dumps({'mine': _custom(own)})}", "--set", "scoring.train=[mine]",
            "--set", "scoring.eval=[mine]", "--set", "stage2.init_from=base", "--set", "warmup.enabled=false",
            "--set", f"paths.work_dir={tmp_path}"]
    assert main(["--stage", "2", "--profile", "smoke", *sets, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "ok  scoring data mine: 8 training row(s)" in out
    (own / "broken.csv").write_text("path,score,set\np00.png,5,training\np01.png,99,training\n")
    broken = {"mine": _custom(own, labels=str(own / "broken.csv"))}
    sets[1] = f"scoring.custom={json.dumps(broken)}"
    assert main(["--stage", "2", "--profile", "smoke", *sets, "--dry-run"]) == 1
    captured = capsys.readouterr()
    assert "broken.csv, line 3: score = '99'" in captured.out and "1 check(s) failed" in captured.err
