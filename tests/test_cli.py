"""The ``refine-iqa`` tool: score (folder with a corrupt image, CSV / JSON out, the Scorer twin),
evaluate (embedded sets, run_config.json, "evaluated here" rows), delegated subcommands."""
from __future__ import annotations

import json
import math
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from refine_iqa_lib import cli
from refine_iqa_lib.io import REPO_ROOT, read_json
from refine_iqa_lib.method.scoring import SCORER_COLUMNS, Scorer


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """Three small pictures, one corrupt JPEG (cut to 100 bytes) and a text file."""
    root = tmp_path_factory.mktemp("cli_images")
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (56 + 28 * i, 84, 3), dtype=np.uint8)).save(root / f"img{i}.png")
    (root / "broken.jpg").write_bytes((root / "img0.png").read_bytes()[:100])
    (root / "notes.txt").write_text("not an image")
    return root


def test_console_script_is_declared():
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["refine-iqa"] == "refine_iqa_lib.cli:main"


def test_help_lists_every_subcommand():
    out = subprocess.run([sys.executable, "-m", "refine_iqa_lib.cli", "--help"], capture_output=True, text=True,
                         cwd=REPO_ROOT, check=True).stdout
    for name in ("score", "evaluate", "build", "train", "reproduce"):
        assert name in out


def test_delegated_subcommands_reach_their_entry_points(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--help"])
    assert e.value.code == 0 and "--stage" in capsys.readouterr().out
    assert cli.main(["reproduce", "--list", "--profile", "smoke"]) == 0
    assert "01_" in capsys.readouterr().out


def test_score_folder_keeps_the_corrupt_image_and_fails_the_exit_code(tiny_model_dir, image_folder, tmp_path, capsys):
    out_csv, out_json = tmp_path / "s.csv", tmp_path / "s.json"
    args = ["score", "--model", str(tiny_model_dir), str(image_folder), "--batch-size", "2", "--no-progress"]
    assert cli.main(args + ["--out", str(out_csv)]) == cli.EXIT_INPUTS_FAILED
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "could not be read" in err
    df = pd.read_csv(out_csv)
    assert list(df.columns) == list(SCORER_COLUMNS) and len(df) == 4  # the .txt is not an image input
    bad = df[df["image"].str.endswith("broken.jpg")].iloc[0]
    assert math.isnan(bad["score"]) and not bad["parsed"] and "not a readable image" in bad["error"]
    good = df[df["error"].isna()]
    assert len(good) == 3 and good["parsed"].all() and good["score"].between(0.5, 4.5).all()
    assert set(df["method"]) == {"prob"} and set(df["mode"]) == {"no_think"}

    assert cli.main(args + ["--out", str(out_json)]) == cli.EXIT_INPUTS_FAILED
    rows = json.loads(out_json.read_text())  # strict JSON: NaN written as null
    assert [r["image"] for r in rows] == df["image"].tolist()
    assert rows[0]["score"] is None and rows[0]["error"]
    assert np.allclose([r["score"] for r in rows[1:]], good["score"], atol=1e-12)  # deterministic

    # the Python twin gives the same rows
    scorer = Scorer(tiny_model_dir, batch_size=2, progress=False)
    paths = cli.expand_inputs([str(image_folder)])
    frame = scorer.score_frame(paths)
    assert frame["image"].tolist() == df["image"].tolist()
    assert np.allclose(frame["score"].to_numpy(), df["score"].to_numpy(), equal_nan=True, atol=1e-12)
    assert scorer.score(paths)[1]["score"] == pytest.approx(frame["score"][1], abs=1e-12)


def test_score_csv_input_relative_paths_and_stdout(tiny_model_dir, image_folder, tmp_path, capsys):
    table = tmp_path / "list.csv"
    pd.DataFrame({"file": ["img1.png", "missing.png"]}).to_csv(table, index=False)
    code = cli.main(["score", "--model", str(tiny_model_dir), str(table), "--image-column", "file",
                     "--image-dir", str(image_folder), "--no-progress"])
    assert code == cli.EXIT_INPUTS_FAILED
    printed = capsys.readouterr().out
    df = pd.read_csv(__import__("io").StringIO(printed))
    assert df["image"].tolist() == [str(image_folder / "img1.png"), str(image_folder / "missing.png")]
    assert df["error"].iloc[1] == "image not found" and np.isfinite(df["score"].iloc[0])
    # a wrong column is an error naming the file and the columns
    assert cli.main(["score", "--model", str(tiny_model_dir), str(table), "--no-progress"]) == cli.EXIT_ERROR
    assert "no column 'image'" in capsys.readouterr().err


def test_score_num_method_rows(tiny_model_dir, image_folder):
    rows = Scorer(tiny_model_dir, method="num", max_new_tokens=8, progress=False).score([image_folder / "img0.png"])
    assert rows[0]["method"] == "num" and rows[0]["error"] is None
    assert rows[0]["parsed"] == math.isfinite(rows[0]["score"])


def test_evaluate_embedded_sets_writes_run_config_and_evaluated_rows(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "results"
    code = cli.main(["evaluate", "--model", str(tiny_model_dir), "--profile", "smoke", "--qbench",
                     "--set", "eval.max_samples=4", "--set", f"paths.work_dir={tmp_path / 'work'}",
                     "--modes", "no_think", "--methods", "prob", "--out-dir", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "evaluated:tiny-seed0" in printed and "evaluated here (smoke)" in printed
    rec = read_json(out / "smoke" / "scoring" / "evaluated--tiny-seed0__koniq__no_think__prob.json")
    assert rec["model"] == "evaluated:tiny-seed0" and rec["n"] == 4 and math.isfinite(rec["srcc"])
    assert (out / "smoke" / "qbench" / "evaluated--tiny-seed0__no_think.json").is_file()
    rc = read_json(out / "smoke" / "evaluated" / "evaluated--tiny-seed0" / "run_config.json")
    assert rc["model_hash"]["sha256"] == cli.model_hash(tiny_model_dir)["sha256"]
    assert "model.safetensors" in rc["model_hash"]["files"] and "config.json" in rc["model_hash"]["files"]
    assert rc["seed"] == 0 and rc["decoding"]["greedy"]["do_sample"] is False and rc["versions"]["transformers"]
    assert rc["decoding"]["engine"] == {"engine": "transformers"}
    t3 = pd.read_csv(out / "tables" / "table3_smoke.csv")
    row = t3[t3["source"] == "evaluated here (smoke)"]          # long CSV: one row per table cell
    assert row["Models"].unique().tolist() == ["tiny-seed0 (w/o think)"]
    srcc = row.loc[row["column"] == "KONIQ SRCC", "value"]
    assert float(srcc.iloc[0]) == pytest.approx(rec["srcc"], abs=5e-4)
    t4 = pd.read_csv(out / "tables" / "table4_smoke.csv")
    assert t4.loc[t4["source"] == "evaluated here (smoke)", "Models"].nunique() == 1


def test_evaluate_with_the_vllm_engine_and_no_vllm_is_a_one_line_error(tiny_model_dir, tmp_path, capsys):
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here: --engine vllm would run")
    out = tmp_path / "results"
    code = cli.main(["evaluate", "--model", str(tiny_model_dir), "--profile", "smoke", "--engine", "vllm",
                     "--set", f"paths.work_dir={tmp_path / 'work'}", "--out-dir", str(out)])
    err = capsys.readouterr().err
    assert code == cli.EXIT_ERROR
    assert err.startswith("error: --engine vllm: vLLM is not installed") and err.count("\n") == 1, err
    assert not out.exists() and not (tmp_path / "work").exists()          # stopped before loading anything


def test_evaluate_names_a_folder_that_is_not_a_model(tmp_path, capsys):
    assert cli.main(["evaluate", "--model", str(tmp_path), "--profile", "smoke"]) == cli.EXIT_ERROR
    assert "not a complete Qwen2.5-VL folder" in capsys.readouterr().err
