"""The embedded scoring set: KonIQ layout, synthetic MOS maps (severity, fidelity), determinism, roots."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from refine_iqa_lib.config import ConfigError, load_config
from refine_iqa_lib.data.iqa import load_iqa
from refine_iqa_lib.data.scoring_data import load_scoring_split, resolve_iqa_root
from refine_iqa_lib.standin.fidelity import (
    FAMILY_GAINS, FIDELITY_MOS, fidelity_features, fidelity_impairment, fidelity_mos,
)
from refine_iqa_lib.standin.scoring_set import (
    SYNTHETIC_MOS, build_embedded_scoring_set, embedded_mos_facts, embedded_sides, fidelity_gain_calibration,
    koniq_raw_from_mos, mos_from_koniq_raw, synthetic_mos,
)

#: Seven families, blur and noise among them (the MOS model must span at least six).
FAMILIES = ["blur", "noise", "compression", "underexposure", "overexposure", "low_contrast", "desaturate"]
#: The 30-picture smoke build (severity map) of build version 3 (the world's photographs and
#: photograph split): sha256 over the CSV / README bytes and the decoded PNG pixels (robust to PNG
#: encoder versions), and the stamp's settings fingerprint. A change to either is a change to the
#: embedded set, which must come with a new build version.
SEVERITY_CONTENT_SHA256 = "202041503e5701da7696c277391e46a4c11a969c6ae9cc437af9e1bc69d35db7"
SEVERITY_FINGERPRINT = "0dd3342ca81c0211"


def _cfg(tmp_path, **over):
    return load_config("smoke", {"paths.work_dir": str(tmp_path / "work"), "scoring.embedded_n_images": 30, **over})


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != "embedded_set.json":
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def _content_digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix in (".csv", ".txt"):
            h.update(p.name.encode())
            h.update(p.read_bytes())
        elif p.suffix == ".png":
            h.update(p.name.encode())
            with Image.open(p) as im:
                h.update(np.asarray(im).tobytes())
    return h.hexdigest()


def _fid_cfg(tmp_path, n=240, **over):
    return _cfg(tmp_path, **{"scoring.embedded_n_images": n, "scoring.embedded_mos": "fidelity",
                             "scoring.embedded_categories": FAMILIES, **over})


@pytest.fixture(scope="module")
def fidelity_built(tmp_path_factory):
    cfg = _fid_cfg(tmp_path_factory.mktemp("fidelity"))
    root = build_embedded_scoring_set(cfg)
    return cfg, root, pd.read_csv(root / "embedded_metadata.csv")


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


# --------------------------------------------------------------------------- scoring.embedded_mos


def test_severity_default_is_unchanged(built):
    cfg, root = built
    assert cfg.scoring.embedded_mos == "severity"
    assert _content_digest(root) == SEVERITY_CONTENT_SHA256            # files as pinned
    stamp = json.loads((root / "embedded_set.json").read_text())
    assert stamp["fingerprint"] == SEVERITY_FINGERPRINT and "embedded_mos" not in stamp["settings"]
    meta = pd.read_csv(root / "embedded_metadata.csv")
    assert meta.columns.tolist() == ["image_name", "set", "source", "kind", "category", "severity", "mos",
                                     "width", "height"]


def test_embedded_mos_key_is_validated(tmp_path):
    with pytest.raises(ConfigError, match=r"scoring.embedded_mos = 'ssim': expected one of severity, fidelity"):
        load_config("smoke", {"scoring.embedded_mos": "ssim"})
    cfg = _cfg(tmp_path)
    cfg.scoring.embedded_mos = "psnr"                                 # set after loading: the builder checks too
    with pytest.raises(ValueError, match=r"scoring.embedded_mos = 'psnr': expected one of severity, fidelity"):
        build_embedded_scoring_set(cfg)


def test_fidelity_mos_spans_the_scale_and_follows_severity_in_every_family(fidelity_built):
    cfg, root, meta = fidelity_built
    facts = embedded_mos_facts(meta)
    assert set(facts["families"]) == set(FAMILIES)
    assert sum(b >= 0.05 for b in facts["bins"]) >= 4, facts["bins"]   # spread over [0, 5)
    for cat, f in facts["families"].items():
        assert f["spearman"] < -0.5, (cat, f)                         # pristine (0) .. very severe (5)
        assert f["spearman_1_5"] < -0.3, (cat, f)                     # and among the distorted pictures
        assert f["mos_max"] - f["mos_min"] > 2.5, (cat, f)
    pristine = meta.loc[meta.severity == 0, "mos"]
    assert 4.3 <= pristine.mean() <= 4.7 and pristine.min() > 3.9
    assert meta.loc[meta.severity == 5, "mos"].mean() < pristine.mean() - 2.5
    assert meta["mos"].between(FIDELITY_MOS["low"], FIDELITY_MOS["high"]).all()
    assert (meta["mos_model"] == "fidelity").all()


def test_fidelity_mos_depends_on_the_content(fidelity_built):
    cfg, root, meta = fidelity_built
    names = ["ssim", "ssim_half", "gmsd", "psnr", "luma_shift", "colourfulness_ratio", "contrast_ratio"]
    feats = meta[names].to_dict(orient="records")
    # the recorded impairment is the model's, and the MOS is its score plus a bounded observer noise
    d = [fidelity_impairment(f, c) for f, c in zip(feats, meta["category"])]
    assert np.allclose(d, meta["impairment"], atol=1e-4)
    clean = pd.Series([fidelity_mos(f, c) for f, c in zip(feats, meta["category"])], index=meta.index)
    assert (clean - meta["mos"]).abs().max() < 5 * FIDELITY_MOS["noise_sd"] + 1e-3
    # without the observer noise, one family at one severity still scores differently on different crops
    cells = clean[meta.severity > 0].groupby([meta["category"], meta["severity"]]).std()
    assert cells.mean() > 0.3 and (cells.dropna() > 0.05).mean() > 0.8, cells
    assert embedded_mos_facts(meta)["cell_sd"] > 2 * FIDELITY_MOS["noise_sd"]


def test_fidelity_build_is_deterministic_keyed_and_reads_as_koniq(tmp_path):
    a = build_embedded_scoring_set(_fid_cfg(tmp_path / "a", n=40))
    b = build_embedded_scoring_set(_fid_cfg(tmp_path / "b", n=40))
    assert _digest(a) == _digest(b)                                   # byte-identical by seed
    sev = build_embedded_scoring_set(_cfg(tmp_path / "a", **{"scoring.embedded_n_images": 40,
                                                             "scoring.embedded_categories": FAMILIES}))
    assert sev == a                                                   # same folder: the model is in the key,
    assert pd.read_csv(sev / "embedded_metadata.csv").columns[-1] == "height"  # so it was rebuilt
    a = build_embedded_scoring_set(_fid_cfg(tmp_path / "a", n=40))
    assert _digest(a) == _digest(b)
    stamp = json.loads((a / "embedded_set.json").read_text())
    assert stamp["settings"]["embedded_mos"] == "fidelity" and stamp["settings"]["mos_map"]["gains"] == FAMILY_GAINS
    assert "perceptual model" in (a / "README.txt").read_text()
    meta = pd.read_csv(a / "embedded_metadata.csv")
    df = load_iqa("koniq", a, split="all")
    got = dict(zip(df["image"].map(lambda p: p.rsplit("/", 1)[-1]), df["mos"]))
    assert all(got[n] == pytest.approx(m, abs=1e-5) for n, m in zip(meta["image_name"], meta["mos"]))
    assert set(meta.loc[meta.severity > 0, "category"]) <= set(FAMILIES)


def test_fidelity_model_functions():
    from refine_iqa_lib.data.distortions import distort
    from refine_iqa_lib.standin.world import load_photo

    ref = np.asarray(Image.fromarray(load_photo("coffee")).resize((112, 84)))
    same = fidelity_features(ref, ref)
    assert fidelity_impairment(same, "blur") == 0.0 and fidelity_mos(same, "blur") == FIDELITY_MOS["top"]
    for cat in ("blur", "noise", "underexposure", "desaturate"):          # more severe -> lower, on one crop
        mos = [fidelity_mos(fidelity_features(ref, distort(ref, cat, s, rng=0)), cat) for s in (1, 5)]
        assert mos[0] > mos[1], (cat, mos)
    with pytest.raises(ValueError, match="category 'fog'; expected 'none' or one of"):
        fidelity_impairment(same, "fog")
    with pytest.raises(ValueError, match="differ in shape"):
        fidelity_features(ref, ref[:56])
    with pytest.raises(ValueError, match="expected both sides >= 22 px"):
        fidelity_features(ref[:20], ref[:20])


def test_family_gains_come_from_the_calibration_rule():
    want = {c: FAMILY_GAINS[c] for c in ("blur", "noise")}
    assert fidelity_gain_calibration(list(want)) == want           # 60 training crops, severity 3


def test_the_mos_model_is_part_of_a_stage2_run_fingerprint(tmp_path):
    from refine_iqa_lib.training.run import stage_fingerprint

    sev, fid = _cfg(tmp_path), _cfg(tmp_path, **{"scoring.embedded_mos": "fidelity"})
    a, b = stage_fingerprint(sev, "2", tmp_path, 1), stage_fingerprint(fid, "2", tmp_path, 1)
    assert "embedded_mos" not in a["settings"]["data"] and b["settings"]["data"]["embedded_mos"] == "fidelity"
    assert a["fingerprint"] != b["fingerprint"]
