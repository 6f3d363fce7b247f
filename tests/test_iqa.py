"""IQA adapters: tiny fixtures written in each dataset's distributed format into tmp_path."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest
import scipy.io
from hypothesis import given, strategies as st

from refine_iqa_lib.data import iqa
from refine_iqa_lib.data.iqa import DATASETS, MOS_TOP, load_iqa, load_qbench, rescale
from refine_iqa_lib.io import check_images


def write_xlsx(path: Path, rows: list[list], sheet: str = "Sheet1", extra_sheets: tuple[str, ...] = ()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = sheet
    for r in rows:
        ws.append(r)
    for name in extra_sheets:
        wb.create_sheet(name).append(["unrelated"])
    wb.save(path)
    return path


# ------------------------------------------------------------------------------------ KonIQ


def make_koniq(root: Path) -> Path:
    names = [f"{i:05d}.jpg" for i in range(1, 7)]
    mos = [1.0, 2.0, 3.0, 4.0, 5.0, 3.5]
    sets = ["training", "training", "validation", "test", "test", "training"]
    scores = pd.DataFrame({"image_name": names, **{f"c{k}": [1] * 6 for k in range(1, 6)}, "c_total": 5,
                           "MOS": mos, "SD": 0.5, "MOS_zscore": [10, 30, 50, 70, 90, 60]})
    root.mkdir(parents=True, exist_ok=True)
    scores.to_csv(root / "koniq10k_scores_and_distributions.csv", index=False)
    scores.assign(set=sets).drop(columns=["MOS_zscore"]).to_csv(root / "koniq10k_distributions_sets.csv", index=False)
    return root


def test_koniq_splits_paths_and_rescale(tmp_path):
    root = make_koniq(tmp_path / "koniq")
    test = load_iqa("koniq", root)  # default split: test
    assert list(test.columns[:5]) == ["dataset", "image", "mos_raw", "mos", "split"]
    assert test["image"].tolist() == [str(root.resolve() / "1024x768" / n) for n in ("00004.jpg", "00005.jpg")]
    assert test["mos_raw"].tolist() == [4.0, 5.0]
    assert test["mos"].tolist() == [3.75, MOS_TOP]  # 5 * (4 - 1) / 4; top clipped
    assert (test["split"] == "test").all() and (test["dataset"] == "koniq").all()
    assert len(load_iqa("koniq", root, "train")) == 3
    assert load_iqa("koniq", root, "val")["mos_raw"].tolist() == [3.0]
    full = load_iqa("koniq", root, "all", image_dir="512x384")
    assert len(full) == 6 and sorted(set(full["split"])) == ["test", "train", "val"]
    assert full["image"].iloc[0].endswith("512x384/00001.jpg")


def test_koniq_errors_name_file_and_expectation(tmp_path):
    root = make_koniq(tmp_path / "koniq")
    with pytest.raises(ValueError, match="unknown split 'training'"):
        load_iqa("koniq", root, "training")
    (root / "koniq10k_distributions_sets.csv").unlink()
    with pytest.raises(FileNotFoundError, match="koniq10k_distributions_sets.csv"):
        load_iqa("koniq", root)
    make_koniq(root)
    pd.read_csv(root / "koniq10k_scores_and_distributions.csv").drop(columns=["MOS"]).to_csv(
        root / "koniq10k_scores_and_distributions.csv", index=False)
    with pytest.raises(ValueError, match=r"scores_and_distributions.csv: missing column\(s\) \['MOS'\]"):
        load_iqa("koniq", root)
    make_koniq(root)
    sets = pd.read_csv(root / "koniq10k_distributions_sets.csv")
    sets.loc[0, "set"] = "holdout"
    sets.to_csv(root / "koniq10k_distributions_sets.csv", index=False)
    with pytest.raises(ValueError, match="unknown 'set' value.*holdout"):
        load_iqa("koniq", root)
    with pytest.raises(KeyError, match="unknown IQA dataset 'konik'"):
        load_iqa("konik", root)
    with pytest.raises(FileNotFoundError, match="folder not found"):
        load_iqa("koniq", tmp_path / "nowhere")


def test_non_numeric_mos_is_reported_not_dropped(tmp_path):
    root = make_koniq(tmp_path / "koniq")
    df = pd.read_csv(root / "koniq10k_scores_and_distributions.csv")
    df["MOS"] = df["MOS"].astype(object)
    df.loc[2, "MOS"] = "n/a"
    df.to_csv(root / "koniq10k_scores_and_distributions.csv", index=False)
    with pytest.raises(ValueError, match=r"1 row\(s\) with a missing or non-numeric 'MOS'.*\[2\]"):
        load_iqa("koniq", root, "all")


# ------------------------------------------------------------------------------------ SPAQ


def make_spaq(root: Path, n: int = 20, title_row: bool = False, reverse: bool = False) -> Path:
    rows = [[f"{i:05d}.jpg", float(i * 4), 50, 50, 50, 50, 50] for i in range(1, n + 1)]
    if reverse:
        rows = rows[::-1]
    header = ["Image name", "MOS", "Brightness", "Colorfulness", "Contrast", "Noisiness", "Sharpness"]
    write_xlsx(root / "Annotations" / "MOS and Image attribute scores.xlsx",
               ([["SPAQ annotations"]] if title_row else []) + [header] + rows)
    return root


def test_spaq_seeded_split_is_deterministic_and_order_free(tmp_path):
    a = load_iqa("spaq", make_spaq(tmp_path / "a"), "all")
    b = load_iqa("spaq", make_spaq(tmp_path / "b", title_row=True, reverse=True), "all")
    assert len(a) == 20 and (a["split"] == "test").sum() == 4  # round(0.2 * 20)
    test_a = set(a.loc[a["split"] == "test", "image"].map(lambda p: Path(p).name))
    test_b = set(b.loc[b["split"] == "test", "image"].map(lambda p: Path(p).name))
    assert test_a == test_b  # a header row elsewhere and a reversed file change nothing
    test = load_iqa("spaq", tmp_path / "a")  # default split
    assert set(test["image"].map(lambda p: Path(p).name)) == test_a
    assert test["image"].iloc[0].startswith(str((tmp_path / "a").resolve() / "TestImage"))
    assert np.allclose(a["mos"], np.clip(a["mos_raw"] / 20, 0, MOS_TOP))
    assert "Sharpness" in a.columns


def test_spaq_split_counts_for_the_full_size():
    perm = np.random.default_rng(iqa.SPAQ_SPLIT_SEED).permutation(11125)
    assert int(round(iqa.SPAQ_TEST_FRACTION * len(perm))) == 2225


def test_spaq_missing_column_names_the_file(tmp_path):
    write_xlsx(tmp_path / "s" / "Annotations" / "MOS and Image attribute scores.xlsx",
               [["Image", "Score"], ["a.jpg", 3]])
    with pytest.raises(ValueError, match=r"MOS and Image attribute scores.xlsx: no header row with columns "
                                         r"\['Image name', 'MOS'\]"):
        load_iqa("spaq", tmp_path / "s")


# ------------------------------------------------------------------------------------ LIVE-C


def make_livec(root: Path, n_extra: int = 4, mos_len: int | None = None, var: str = "AllImages_release") -> Path:
    names = [f"t{i}.bmp" for i in range(1, 8)] + [f"{10 + i}.JPG" for i in range(n_extra)]
    cells = np.empty((len(names), 1), dtype=object)
    for i, name in enumerate(names):
        cells[i, 0] = name
    mos = np.linspace(10, 90, mos_len or len(names)).reshape(1, -1)
    (root / "Data").mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(root / "Data" / "AllImages_release.mat", {var: cells})
    scipy.io.savemat(root / "Data" / "AllMOS_release.mat", {"AllMOS_release": mos})
    return root


def test_livec_reads_cell_array_and_drops_training_images(tmp_path):
    root = make_livec(tmp_path / "livec")
    raw = scipy.io.loadmat(root / "Data" / "AllImages_release.mat")["AllImages_release"]
    assert raw.dtype == object and raw.shape == (11, 1)  # the layout loadmat gives for a cell array
    df = load_iqa("livec", root)
    assert len(df) == 4 and (df["split"] == "all").all()
    assert [Path(p).name for p in df["image"]] == ["10.JPG", "11.JPG", "12.JPG", "13.JPG"]
    assert np.allclose(df["mos_raw"], np.linspace(10, 90, 11)[7:])
    assert np.allclose(df["mos"], df["mos_raw"] / 20)
    assert Path(df["image"].iloc[0]).parent.name == "Images"


def test_livec_wrong_mos_length_and_variable(tmp_path):
    with pytest.raises(ValueError, match=r"AllMOS_release.mat: 'AllMOS_release' has 10 values but .*11 images"):
        load_iqa("livec", make_livec(tmp_path / "a", mos_len=10))
    with pytest.raises(ValueError, match=r"AllImages_release.mat: no variable 'AllImages_release'.*\['names'\]"):
        load_iqa("livec", make_livec(tmp_path / "b", var="names"))
    make_livec(tmp_path / "c")
    (tmp_path / "c" / "Data" / "AllMOS_release.mat").write_bytes(b"not a mat file")
    with pytest.raises(ValueError, match="AllMOS_release.mat: not a readable MAT file"):
        load_iqa("livec", tmp_path / "c")


# ------------------------------------------------------------------------------------ KADID / AGIQA


def test_kadid_higher_is_better_and_reference_split(tmp_path):
    root = tmp_path / "kadid"
    root.mkdir()
    refs = ["I01", "I65", "I66", "I81", "I82"]
    pd.DataFrame({"dist_img": [f"{r}_01_01.png" for r in refs], "ref_img": [f"{r}.png" for r in refs],
                  "dmos": [1.0, 2.0, 3.0, 4.0, 5.0], "var": 0.1}).to_csv(root / "dmos.csv", index=False)
    df = load_iqa("kadid10k", root)
    assert len(df) == 5 and df["mos"].tolist() == [0.0, 1.25, 2.5, 3.75, MOS_TOP]  # no inversion
    test = load_iqa("kadid10k", root, "test")
    assert test["ref_img"].tolist() == ["I66.png", "I81.png"]
    assert test["image"].iloc[0] == str(root.resolve() / "images" / "I66_01_01.png")
    assert iqa.KADID_TEST_REFS == range(66, 82) and len(iqa.KADID_TEST_REFS) * 25 * 5 == 2000


def test_agiqa_reads_mos_quality(tmp_path):
    root = tmp_path / "agiqa"
    root.mkdir()
    pd.DataFrame({"name": ["a.png", "b.png"], "prompt": ["a cat", "a dog"], "adj1": "", "adj2": "",
                  "style": "", "mos_quality": [1.0, 4.0], "std_quality": 0.3, "mos_align": [2.0, 3.0],
                  "std_align": 0.3}).to_csv(root / "data.csv", index=False)
    df = load_iqa("agiqa3k", root)
    assert df["mos"].tolist() == [1.0, 4.0] and df["mos_align"].tolist() == [2.0, 3.0]
    assert df["prompt"].tolist() == ["a cat", "a dog"]
    (root / "data.csv").write_text("name,prompt\na.png,x\n")
    with pytest.raises(ValueError, match=r"data.csv: missing column\(s\) \['mos_quality'\]"):
        load_iqa("agiqa3k", root)


# ------------------------------------------------------------------------------------ CSIQ


CSIQ_HEADER = ["image", "dst_idx", "dst_type", "dst_lev", "dmos_std", "dmos"]


def test_csiq_inverts_dmos_and_builds_distributed_file_names(tmp_path):
    root = tmp_path / "csiq"
    rows = [[1600, 1, "noise", 1, 0.01, 0.0], ["boston", 3, "jpeg 2000", 5, 0.02, 1.0],
            [1600, 5, "blur", 2, 0.01, 0.25], ["boston", 2, "jpeg", 3, 0.01, 0.5]]
    # a blank first row and column, as the distributed sheet has; an unrelated first sheet
    write_xlsx(root / "csiq.DMOS.xlsx", [[]] + [[None] + r for r in [CSIQ_HEADER] + rows], sheet="all_by_image")
    df = load_iqa("csiq", root)
    names = [str(Path(p).relative_to(root.resolve())) for p in df["image"]]
    assert names == ["dst_imgs/awgn/1600.AWGN.1.png", "dst_imgs/jpeg2000/boston.jpeg2000.5.png",
                     "dst_imgs/blur/1600.BLUR.2.png", "dst_imgs/jpeg/boston.JPEG.3.png"]
    assert df["mos"].tolist() == [MOS_TOP, 0.0, 3.75, 2.5]  # higher DMOS = worse
    assert df["dst_lev"].tolist() == [1, 5, 2, 3]


def test_csiq_errors(tmp_path):
    write_xlsx(tmp_path / "a" / "csiq.DMOS.xlsx", [CSIQ_HEADER, [1600, 1, "noise", 1, 0.0, 0.1]], sheet="other")
    with pytest.raises(ValueError, match=r"csiq.DMOS.xlsx: cannot read sheet 'all_by_image'"):
        load_iqa("csiq", tmp_path / "a")
    write_xlsx(tmp_path / "b" / "csiq.DMOS.xlsx", [CSIQ_HEADER, [1600, 1, "ringing", 1, 0.0, 0.1]],
               sheet="all_by_image")
    with pytest.raises(ValueError, match=r"unknown dst_type value\(s\) \['ringing'\]"):
        load_iqa("csiq", tmp_path / "b")


# ------------------------------------------------------------------------------------ shared


def test_dataset_table_drives_every_loader():
    assert set(DATASETS) == {"koniq", "spaq", "livec", "agiqa3k", "kadid10k", "csiq"}
    for name, info in DATASETS.items():
        assert info.name == name and info.default_split in info.splits and "all" in info.splits
        assert info.raw_range[0] < info.raw_range[1] and info.labels
    assert [n for n, d in DATASETS.items() if not d.higher_is_better] == ["csiq"]
    with pytest.raises(AttributeError):
        DATASETS["koniq"].image_dir = "x"  # frozen


@given(st.lists(st.floats(-10, 110), min_size=1, max_size=30), st.booleans())
def test_rescale_is_bounded_and_monotone(values, up):
    y = rescale(values, 0, 100, up)
    assert np.all((0 <= y) & (y <= MOS_TOP))
    order = np.argsort(values, kind="stable")
    steps = np.diff(y[order])
    assert np.all(steps >= 0) if up else np.all(steps <= 0)


def test_check_images_counts_missing_and_unreadable(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    df = pd.DataFrame({"image": [str(tmp_path / n) for n in ("a.png", "b.png", "c.png")]})
    report = check_images(df, max_examples=1, progress=False)
    assert (report.n_images, report.n_missing, report.n_unreadable, report.ok) == (3, 2, 1, False)
    assert report.examples == (str(tmp_path / "b.png"),)
    assert "2 of 3 image files missing" in str(report) and "1 of 3 image files unreadable" in str(report)
    assert check_images(df.iloc[1:2], progress=False).unreadable == ()
    with pytest.raises(ValueError, match="no 'image' column"):
        check_images(pd.DataFrame({"path": []}))


# ------------------------------------------------------------------------------------ Q-Bench


QUESTIONS = [
    {"img_path": "1.jpg", "question": "Is the image blurry?", "candidates": ["Yes", "No"], "correct_ans": "No",
     "type": 0, "concern": 0},
    {"img_path": "2.jpg", "question": "What is the main distortion?", "candidates": ["Noise", "Blur", "Overexposure"],
     "correct_ans": "Blur", "type": 1, "concern": 2},
    {"img_path": "3.jpg", "question": "How is the sky's clarity?", "candidates": ["Low", "Medium", "High", "None"],
     "correct_ans": "High", "type": 2, "concern": 3},
]


def test_qbench_dev_reads_answers(tmp_path):
    (tmp_path / "llvisionqa_dev.json").write_text(json.dumps(QUESTIONS))
    df = load_qbench(tmp_path, "dev")
    assert df["answer_index"].tolist() == [1, 1, 2]
    assert df["type_name"].tolist() == ["yes_no", "what", "how"]
    assert df["concern_name"].tolist() == ["technical", "incontext_technical", "incontext_other"]
    assert df["scorable"].all() and df["image"].iloc[0] == str(tmp_path.resolve() / "images" / "1.jpg")
    assert df["candidates"].iloc[2] == ["Low", "Medium", "High", "None"]


def test_qbench_test_split_without_answers_is_never_scored_silently(tmp_path):
    unanswered = [{k: v for k, v in q.items() if k != "correct_ans"} for q in QUESTIONS]
    (tmp_path / "llvisionqa_test.json").write_text(json.dumps(unanswered))
    with pytest.raises(ValueError, match="3 of 3 questions have no 'correct_ans'.*split='dev'"):
        load_qbench(tmp_path, "test")
    df = load_qbench(tmp_path, "test", require_answers=False)
    assert not df["scorable"].any() and df["answer"].isna().all() and (df["answer_index"] == -1).all()


def test_qbench_jsonl_and_malformed_records(tmp_path):
    (tmp_path / "llvisionqa_dev.json").write_text("\n".join(json.dumps(q) for q in QUESTIONS))
    assert len(load_qbench(tmp_path)) == 3
    bad = [dict(QUESTIONS[0]), dict(QUESTIONS[1], candidates=["a", "b", "c", "d", "e"])]
    (tmp_path / "llvisionqa_dev.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="llvisionqa_dev.json: record 1: 5 candidates; expected 2-4"):
        load_qbench(tmp_path)
    (tmp_path / "llvisionqa_dev.json").write_text(json.dumps([dict(QUESTIONS[0], correct_ans="Maybe")]))
    with pytest.raises(ValueError, match="record 0: correct_ans 'Maybe' is not one of the candidates"):
        load_qbench(tmp_path)
    (tmp_path / "llvisionqa_dev.json").write_text(json.dumps([{"img_path": "1.jpg"}]))
    with pytest.raises(ValueError, match=r"record 0: missing key\(s\) \['question', 'candidates', 'type', 'concern'\]"):
        load_qbench(tmp_path)
    with pytest.raises(FileNotFoundError, match="llvisionqa_test.json: not found"):
        load_qbench(tmp_path, "test")
