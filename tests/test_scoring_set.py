"""The embedded scoring set: KonIQ layout, synthetic MOS map, determinism, roots."""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from refine_iqa_lib.config import ConfigError, load_config
from refine_iqa_lib.data.iqa import load_iqa
from refine_iqa_lib.data.scoring_set import (
    SYNTHETIC_MOS, build_embedded_scoring_set, embedded_sides, koniq_raw_from_mos, load_scoring_split,
    mos_from_koniq_raw, resolve_iqa_root, synthetic_mos,
)


def _cfg(tmp_path, **over):
    return load_config("smoke", {"paths.work_dir": str(tmp_path / "work"), "scoring.embedded_n_images": 30, **over})


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != "embedded_set.json":
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scoring")
    cfg = _cfg(tmp)
    return cfg, build_embedded_scoring_set(cfg)


def test_reads_back_as_koniq_with_the_synthetic_mos(built):
    cfg, root = built
    meta = pd.read_csv(root / "embedded_metadata.csv")
    df = load_iqa("koniq", root, split="all")
    assert len(df) == 30 and set(df["split"]) == {"train", "val", "test"}
    got = dict(zip(df["image"].map(lambda p: p.rsplit("/", 1)[-1]), df["mos"]))
    for name, mos in zip(meta["image_name"], meta["mos"]):
        assert got[name] == pytest.approx(mos, abs=1e-5)          # the loader's rescale gives the mos back
    counts = meta["set"].value_counts()
    assert (counts["training"], counts["validation"], counts["test"]) == (21, 3, 6)
    # the map: pristine pictures score high, severe ones low; within the documented bounds
    by_sev = meta.groupby("severity")["mos"].mean()
    assert by_sev.loc[0] > 4.0 and by_sev.index.max() >= 4 and by_sev.iloc[-1] < by_sev.loc[0] - 2.5
    assert meta["mos"].between(SYNTHETIC_MOS["low"], SYNTHETIC_MOS["high"]).all()
    assert set(meta.loc[meta.severity > 0, "category"]) <= {"noise", "underexposure"}
    assert (meta.loc[meta.severity == 0, "category"] == "none").all()


def test_pictures_have_merge_grid_sides_and_koniq_columns(built):
    cfg, root = built
    for p in sorted((root / "1024x768").glob("*.png"))[:10]:
        with Image.open(p) as im:
            w, h = im.size
            assert im.mode == "RGB"
        assert w in embedded_sides(112) and h in embedded_sides(112)
    cols = pd.read_csv(root / "koniq10k_scores_and_distributions.csv").columns.tolist()
    assert cols == ["image_name", "c1", "c2", "c3", "c4", "c5", "c_total", "MOS", "SD", "MOS_zscore"]
    sets = pd.read_csv(root / "koniq10k_distributions_sets.csv")
    assert "set" in sets.columns and set(sets["set"]) == {"training", "validation", "test"}
    assert "NOT HUMAN DATA" in (root / "README.txt").read_text()


def test_deterministic_and_cached(built, tmp_path):
    cfg, root = built
    before = _digest(root)
    stamp = (root / "embedded_set.json").stat().st_mtime_ns
    assert build_embedded_scoring_set(cfg) == root and (root / "embedded_set.json").stat().st_mtime_ns == stamp
    other = build_embedded_scoring_set(_cfg(tmp_path))               # same settings, another folder
    assert _digest(other) == before
    changed = build_embedded_scoring_set(_cfg(tmp_path, **{"scoring.seed": 1}))
    assert _digest(changed) != before


def test_mos_map_and_scale_helpers():
    assert koniq_raw_from_mos(0.0) == 1.0 and koniq_raw_from_mos(5.0) == 5.0
    for m in (0.0, 1.37, 4.9):
        assert mos_from_koniq_raw(koniq_raw_from_mos(m)) == pytest.approx(m)
    rng = np.random.default_rng(0)
    draws = [synthetic_mos(3, rng) for _ in range(2000)]
    assert np.mean(draws) == pytest.approx(4.5 - 0.8 * 3, abs=0.02) and np.std(draws) == pytest.approx(0.15, abs=0.02)
    assert embedded_sides(56) == [56] and embedded_sides(140) == [56, 84, 112, 140]


def test_roots_and_errors(built, tmp_path):
    cfg, root = built
    assert resolve_iqa_root(cfg, "koniq") == root and resolve_iqa_root(cfg, "embedded") == root
    assert load_scoring_split(cfg, "koniq", "train")["dataset"].eq("koniq").all()
    with pytest.raises(ConfigError, match="scoring.roots has no folder for dataset 'spaq'"):
        resolve_iqa_root(cfg, "spaq")
    missing = load_config(cfg, {"scoring.roots": {"spaq": str(tmp_path / "nope")}})
    with pytest.raises(FileNotFoundError, match="nope"):
        resolve_iqa_root(missing, "spaq")
    with pytest.raises(ValueError, match="embedded_categories"):
        build_embedded_scoring_set(_cfg(tmp_path, **{"scoring.embedded_categories": ["fog"]}))
