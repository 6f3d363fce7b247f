import pandas as pd

from refine_iqa_lib.artifacts import ARTIFACTS, artifact_table, is_available, table_headlines, write_index
from refine_iqa_lib.config import load_config


def test_every_paper_artifact_is_mapped_and_built():
    names = {a.artifact for a in ARTIFACTS}
    assert {f"Table {n}" for n in range(1, 7)} <= names
    assert {"Eq. 1", "Eq. 2", "Eq. 3-4", "Eq. 5", "Eq. 6", "Eq. 7", "Eq. 8", "Fig. 2", "Fig. 4"} <= names
    table = artifact_table("tiny")
    assert (table["status"] == "built").all(), table[table["status"] != "built"]
    assert not is_available("refine_iqa_lib.method.rewards.no_such_reward")


def test_headlines_pair_paper_and_ours():
    t = pd.DataFrame({"Models": ["A", "A", "B"], "source": ["paper", "ours (tiny)", "paper"],
                      "Overall": [76.4, 12.5, 70.0], "note": [None, "stand-in", None]})
    assert table_headlines(t, "Overall") == [{"row": "A", "paper": 76.4, "ours": 12.5, "ci_low": None, "ci_high": None,
                                              "note": "stand-in"}]


def test_headlines_read_the_long_csv_with_intervals(tmp_path):
    long = pd.DataFrame({"Models": ["A", "A", "A", "A"], "source": ["paper", "paper", "ours (tiny)", "ours (tiny)"],
                         "column": ["Blur", "Overall", "Blur", "Overall"], "value": [70.0, 76.4, 10.0, 12.5],
                         "ci_low": [None, None, 5.0, 8.25], "ci_high": [None, None, 15.0, 16.75], "n": [None, None, 9, 40],
                         "note": [None, None, "stand-in", "stand-in"]})
    (tmp_path / "results" / "tables").mkdir(parents=True)
    long.to_csv(tmp_path / "results" / "tables" / "table1_tiny.csv", index=False)
    heads = table_headlines(pd.read_csv(tmp_path / "results" / "tables" / "table1_tiny.csv"), "Overall")
    assert [(h["row"], h["paper"], h["ours"], h["ci_low"], h["ci_high"]) for h in heads] == [("A", 76.4, 12.5, 8.25, 16.75)]
    text = write_index(load_config("tiny"), repo_root=tmp_path).read_text()
    assert "| A | 76.40 | 12.50 [8.25, 16.75] | stand-in |" in text
    assert "[CLAIMS.md](CLAIMS.md)" in text


def test_write_index_lists_files_and_numbers(tmp_path):
    (tmp_path / "results" / "tables").mkdir(parents=True)
    pd.DataFrame({"Models": ["Refine-IQA-S1", "Refine-IQA-S1"], "source": ["paper", "ours (tiny)"],
                  "Overall": [76.37, 31.0], "note": [None, "synthetic"]}).to_csv(
        tmp_path / "results" / "tables" / "table1_tiny.csv", index=False)
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "fig4_answer_reward_tiny.png").write_bytes(b"png")
    text = write_index(load_config("tiny"), repo_root=tmp_path).read_text()
    assert "profile `tiny`" in text
    assert "| Refine-IQA-S1 | 76.37 | 31.00 | synthetic |" in text
    assert "`figures/fig4_answer_reward_tiny.png`" in text
    assert "none yet (`results/tables/table3_tiny.csv`)" in text


def test_smoke_runs_never_replace_the_committed_index(tmp_path):
    """`make test` and `make reproduce PROFILE=smoke` write their own, git-ignored index."""
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "INDEX.md").write_text("tiny index")
    out = write_index(load_config("smoke"), repo_root=tmp_path)
    assert out.name == "INDEX_smoke.md" and "profile `smoke`" in out.read_text()
    assert (tmp_path / "results" / "INDEX.md").read_text() == "tiny index"


def test_readme_shows_the_current_artifact_map():
    from pathlib import Path

    from refine_iqa_lib.artifacts import README_END, README_START, render_artifact_map

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split(README_START, 1)[1].split(README_END, 1)[0]
    assert section.strip() == render_artifact_map().strip(), (
        "README's artifact map is stale: run python -c 'from refine_iqa_lib.artifacts import update_readme; "
        "update_readme(\"README.md\")'")
