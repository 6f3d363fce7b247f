"""IQA benchmark adapters: read each dataset exactly as it is distributed.

One table of dataset facts, :data:`DATASETS`, drives every loader (the pyiqa habit): the labels
file(s), the image folder, the raw score range and direction, the splits and a small reader that
only knows the file format. :func:`load_iqa` does everything common: checks, split selection,
absolute image paths and the rescale to the training scale [0, 5).

* ``koniq`` (KonIQ-10k): ``koniq10k_scores_and_distributions.csv`` (``MOS``, 1-5, higher better)
  + ``koniq10k_distributions_sets.csv`` (``set``); images ``1024x768/`` (or ``512x384/``); splits
  train 7058 / val 1000 / test 2015 (default) / all.
* ``spaq`` (SPAQ): ``Annotations/MOS and Image attribute scores.xlsx`` (``MOS``, 0-100); images
  ``TestImage/``; seeded split train 8900 / test 2225 (default) / all.
* ``livec`` (LIVE Challenge): ``Data/AllImages_release.mat`` + ``Data/AllMOS_release.mat`` (0-100);
  images ``Images/``; all 1162 (default).
* ``agiqa3k`` (AGIQA-3K): ``data.csv`` (``mos_quality``, 0-5); images ``images/``; all 2982.
* ``kadid10k`` (KADID-10K): ``dmos.csv`` (``dmos``, 1-5, higher better); images ``images/``;
  all 10125 (default) or test 2000 (references I66-I81).
* ``csiq`` (CSIQ): ``csiq.DMOS.xlsx`` sheet ``all_by_image`` (``dmos``, 0-1, **higher worse**);
  images ``dst_imgs/<type>/``; all 866.

Choices and assumptions (documented here because the papers do not fix them):

* **Rescale.** The paper scales every MOS "uniformly to [0, 5)"; its constants are unknown. We map
  the dataset's nominal range [lo, hi] linearly onto [0, 5] (``hi`` to 0 when lower is better) and
  clip to [0, :data:`MOS_TOP`] = [0, 4.99], so that the integer digit is always one of the Eq. 8
  classes 0-4. Correlations (SRCC, PLCC) are unchanged by this map (up to the clip at the top).
* **SPAQ split.** SPAQ has no official split. Images are sorted by name, permuted with
  ``numpy.random.default_rng(SPAQ_SPLIT_SEED)`` (seed 0) and the first ``round(0.2 n)`` are the
  test split: 2225 test / 8900 train for the 11,125 images. Q-Align's list (8,897 / 2,224, which
  sums to 11,121) is not public to us, so the counts differ by a few images.
* **LIVE-C.** The MAT files list 1,169 images whose first 7 (``t1.bmp`` ... ``t7.bmp``) were the
  study's training images; they are dropped by name, leaving 1,162.
* **KADID-10K.** ``dmos.csv``'s ``dmos`` is a 1-5 degradation category rating where higher is
  better. ``test`` is the 2,000 images from references I66-I81 (16 x 25 distortions x 5 levels);
  the other rows are labelled ``train``.
* **CSIQ.** ``dmos`` is 0-1 with higher = worse, so it is inverted. Image files follow the
  distribution's naming ``dst_imgs/<folder>/<image>.<LABEL>.<level>.png`` with ``dst_type`` ->
  (folder, LABEL): noise -> (awgn, AWGN), jpeg -> (jpeg, JPEG), jpeg 2000 -> (jpeg2000, jpeg2000),
  fnoise -> (fnoise, fnoise), blur -> (blur, BLUR), contrast -> (contrast, contrast), e.g.
  ``dst_imgs/awgn/1600.AWGN.1.png`` (as seen in public CSIQ loaders; unverified against the
  archive itself). Numeric image names read from Excel (``1600.0``) are written as ``1600``.
* **AGIQA-3K.** ``mos_quality`` is used (not ``mos_align``); its nominal range is taken as 0-5.
  Images are expected under ``images/`` (pass ``image_dir`` if your copy differs).

A missing or malformed file raises an error naming the file and what was expected.

Your own labels: :func:`load_labels` reads a CSV / JSONL (image path, MOS, optional split and
standard deviation) with the MOS range and direction declared by the caller (config:
``scoring.custom.<name>``, see :mod:`refine_iqa_lib.data.scoring_data`), into the same columns.

>>> rescale([1.0, 3.0, 5.0], 1, 5, higher_is_better=True).tolist()
[0.0, 2.5, 4.99]
>>> rescale([0.0, 0.5, 1.0], 0, 1, higher_is_better=False).tolist()
[4.99, 2.5, 0.0]
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

#: Largest rescaled MOS: keeps the integer digit within the Eq. 8 classes 0-4.
MOS_TOP = 4.99
#: Seed of the SPAQ 80/20 split and its test fraction.
SPAQ_SPLIT_SEED = 0
SPAQ_TEST_FRACTION = 0.2
#: LIVE-C training images removed from the 1,169 listed.
LIVEC_TRAINING_IMAGES = tuple(f"t{i}" for i in range(1, 8))
#: KADID-10K reference numbers of the 2,000-image ``test`` split.
KADID_TEST_REFS = range(66, 82)
#: CSIQ ``dst_type`` -> (folder under dst_imgs/, label inside the file name).
CSIQ_TYPES = {
    "noise": ("awgn", "AWGN"),
    "awgn": ("awgn", "AWGN"),
    "jpeg": ("jpeg", "JPEG"),
    "jpeg 2000": ("jpeg2000", "jpeg2000"),
    "jpeg2000": ("jpeg2000", "jpeg2000"),
    "fnoise": ("fnoise", "fnoise"),
    "f noise": ("fnoise", "fnoise"),
    "blur": ("blur", "BLUR"),
    "contrast": ("contrast", "contrast"),
}
#: Split names used in the ``split`` column (KonIQ's own names are mapped onto them).
SPLIT_ALIASES = {"training": "train", "validation": "val", "train": "train", "val": "val", "test": "test"}

#: Q-Bench A1 codes.
QBENCH_TYPES = {0: "yes_no", 1: "what", 2: "how"}
QBENCH_CONCERNS = {0: "technical", 1: "other", 2: "incontext_technical", 3: "incontext_other"}

Reader = Callable[["DatasetInfo", Path], pd.DataFrame]


@dataclass(frozen=True)
class DatasetInfo:
    """Facts about one IQA dataset as distributed.

    ``reader(info, root)`` returns one row per image with columns ``name`` (file path relative to
    the image folder), ``mos_raw``, ``split`` (train/val/test/all) and any extra columns.
    """

    name: str
    title: str
    labels: tuple[str, ...]
    image_dir: str
    raw_range: tuple[float, float]
    higher_is_better: bool
    splits: tuple[str, ...]
    default_split: str
    reader: Reader
    n_all: int


# --------------------------------------------------------------------------------------------
# small checked readers (every error names the file and what was expected)


def _need(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; expected {what}")
    return path


def _require_columns(df: pd.DataFrame, cols: Sequence[str], path: Path, where: str = "") -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(
            f"{path}{where}: missing column(s) {missing}; expected {list(cols)}, "
            f"found {[str(c) for c in df.columns]}"
        )


def _read_csv(path: Path, cols: Sequence[str], what: str) -> pd.DataFrame:
    _need(path, what)
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a readable CSV ({e}); expected {what}") from e
    df.columns = [str(c).strip() for c in df.columns]
    _require_columns(df, cols, path)
    return df


def _read_excel(path: Path, cols: Sequence[str], what: str, sheet: str | int = 0) -> pd.DataFrame:
    """Read a sheet whose header row (containing every name in ``cols``) may not be the first."""
    _need(path, what)
    try:
        raw = pd.read_excel(path, sheet_name=sheet, header=None, engine="openpyxl")
    except ValueError as e:  # missing sheet, or not an xlsx
        raise ValueError(f"{path}: cannot read sheet {sheet!r} ({e}); expected {what}") from e
    except Exception as e:  # openpyxl raises zipfile / KeyError variants on corrupt files
        raise ValueError(f"{path}: not a readable XLSX ({type(e).__name__}: {e}); expected {what}") from e
    where = f" (sheet {sheet!r})" if isinstance(sheet, str) else ""
    for i in range(min(len(raw), 20)):
        header = [str(v).strip() if pd.notna(v) else "" for v in raw.iloc[i]]
        if all(c in header for c in cols):
            df = raw.iloc[i + 1 :].copy()
            df.columns = header
            df = df.loc[:, [h != "" for h in header]].dropna(how="all")
            return df.reset_index(drop=True)
    first = [str(v) for v in raw.iloc[0]] if len(raw) else []
    raise ValueError(f"{path}{where}: no header row with columns {list(cols)} in the first 20 rows "
                     f"(first row: {first})")


def _numeric(values: pd.Series, path: Path, column: str) -> np.ndarray:
    out = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(~np.isfinite(out))
    if bad.size:
        raise ValueError(f"{path}: {bad.size} row(s) with a missing or non-numeric {column!r} "
                         f"(first data rows {bad[:5].tolist()}); expected numbers")
    return out


def _cell_name(v) -> str:
    """A file-name cell as text: Excel turns ``1600`` into ``1600.0``."""
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v).strip()


# --------------------------------------------------------------------------------------------
# one reader per file format


def _read_koniq(info: DatasetInfo, root: Path) -> pd.DataFrame:
    scores_path, sets_path = root / info.labels[0], root / info.labels[1]
    scores = _read_csv(scores_path, ["image_name", "MOS"], "KonIQ-10k scores (image_name, ..., MOS, SD, MOS_zscore)")
    sets = _read_csv(sets_path, ["image_name", "set"], "KonIQ-10k splits (image_name, ..., set)")
    sets = sets[["image_name", "set"]].drop_duplicates("image_name")
    df = scores.merge(sets, on="image_name", how="left")
    unsplit = df["set"].isna()
    if unsplit.any():
        raise ValueError(f"{sets_path}: {int(unsplit.sum())} image(s) of {scores_path.name} have no "
                         f"'set' (first: {df.loc[unsplit, 'image_name'].head(3).tolist()})")
    split = df["set"].astype(str).str.strip().str.lower().map(SPLIT_ALIASES)
    if split.isna().any():
        raise ValueError(f"{sets_path}: unknown 'set' value(s) {sorted(set(df.loc[split.isna(), 'set']))}; "
                         "expected training, validation or test")
    extra = {c: df[c] for c in ("SD", "MOS_zscore") if c in df.columns}
    return pd.DataFrame({"name": df["image_name"].astype(str), "mos_raw": _numeric(df["MOS"], scores_path, "MOS"),
                         "split": split, **extra})


def _read_spaq(info: DatasetInfo, root: Path) -> pd.DataFrame:
    path = root / info.labels[0]
    df = _read_excel(path, ["Image name", "MOS"], "SPAQ annotations (Image name, MOS, Brightness, ...)")
    names = df["Image name"].map(_cell_name)
    order = np.argsort(names.to_numpy(dtype=str), kind="stable")
    perm = np.random.default_rng(SPAQ_SPLIT_SEED).permutation(len(df))
    n_test = int(round(SPAQ_TEST_FRACTION * len(df)))
    split = np.full(len(df), "train", dtype=object)
    split[order[perm[:n_test]]] = "test"
    extra = {c: df[c].to_numpy() for c in ("Brightness", "Colorfulness", "Contrast", "Noisiness", "Sharpness")
             if c in df.columns}
    return pd.DataFrame({"name": names, "mos_raw": _numeric(df["MOS"], path, "MOS"), "split": split, **extra})


def _mat_variable(path: Path, var: str, what: str) -> np.ndarray:
    from scipy.io import loadmat

    _need(path, what)
    try:
        mat = loadmat(path)
    except Exception as e:  # scipy raises ValueError / MatReadError on bad files
        raise ValueError(f"{path}: not a readable MAT file ({e}); expected {what}") from e
    if var not in mat:
        found = [k for k in mat if not k.startswith("__")]
        raise ValueError(f"{path}: no variable {var!r}; expected {what}, found variables {found}")
    return np.asarray(mat[var])


def _read_livec(info: DatasetInfo, root: Path) -> pd.DataFrame:
    names_path, mos_path = root / info.labels[0], root / info.labels[1]
    cells = _mat_variable(names_path, "AllImages_release", "a cell array of 1,169 image names").ravel()
    names = []
    for i, c in enumerate(cells):
        a = np.asarray(c).ravel()
        if a.size != 1 or not isinstance(a[0], str):
            raise ValueError(f"{names_path}: entry {i} of 'AllImages_release' is {c!r}; expected one file name")
        names.append(str(a[0]).strip())
    mos = _mat_variable(mos_path, "AllMOS_release", "a 1x1169 array of MOS").astype(float).ravel()
    if mos.size != len(names):
        raise ValueError(f"{mos_path}: 'AllMOS_release' has {mos.size} values but {names_path.name} lists "
                         f"{len(names)} images; expected one MOS per image")
    df = pd.DataFrame({"name": names, "mos_raw": mos, "split": "all"})
    return df[~df["name"].map(lambda n: Path(n).stem.lower() in LIVEC_TRAINING_IMAGES)]


def _read_kadid(info: DatasetInfo, root: Path) -> pd.DataFrame:
    path = root / info.labels[0]
    df = _read_csv(path, ["dist_img", "ref_img", "dmos"], "KADID-10K scores (dist_img, ref_img, dmos, var)")
    ref = df["ref_img"].astype(str).str.extract(r"^[Ii](\d+)", expand=False)
    if ref.isna().any():
        raise ValueError(f"{path}: ref_img value(s) {df.loc[ref.isna(), 'ref_img'].head(3).tolist()} are not "
                         "like 'I01.png'")
    split = np.where(ref.astype(int).isin(KADID_TEST_REFS), "test", "train")
    return pd.DataFrame({"name": df["dist_img"].astype(str), "mos_raw": _numeric(df["dmos"], path, "dmos"),
                         "split": split, "ref_img": df["ref_img"].astype(str)})


def _read_csiq(info: DatasetInfo, root: Path) -> pd.DataFrame:
    path = root / info.labels[0]
    cols = ["image", "dst_idx", "dst_type", "dst_lev", "dmos_std", "dmos"]
    df = _read_excel(path, cols, "CSIQ DMOS (image, dst_idx, dst_type, dst_lev, dmos_std, dmos)", sheet="all_by_image")
    kind = df["dst_type"].astype(str).str.strip().str.lower()
    unknown = sorted(set(kind) - set(CSIQ_TYPES))
    if unknown:
        raise ValueError(f"{path}: unknown dst_type value(s) {unknown}; expected one of {sorted(CSIQ_TYPES)}")
    level = _numeric(df["dst_lev"], path, "dst_lev").astype(int)
    image = df["image"].map(_cell_name)
    names = [f"{CSIQ_TYPES[k][0]}/{im}.{CSIQ_TYPES[k][1]}.{lev}.png" for k, im, lev in zip(kind, image, level)]
    return pd.DataFrame({"name": names, "mos_raw": _numeric(df["dmos"], path, "dmos"), "split": "all",
                         "ref_img": image.to_numpy(), "dst_type": kind.to_numpy(), "dst_lev": level})


def _read_agiqa(info: DatasetInfo, root: Path) -> pd.DataFrame:
    path = root / info.labels[0]
    df = _read_csv(path, ["name", "mos_quality"], "AGIQA-3K labels (name, prompt, ..., mos_quality, ...)")
    extra = {c: df[c].to_numpy() for c in ("prompt", "style", "mos_align") if c in df.columns}
    return pd.DataFrame({"name": df["name"].astype(str), "mos_raw": _numeric(df["mos_quality"], path, "mos_quality"),
                         "split": "all", **extra})


DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in (
        DatasetInfo("koniq", "KonIQ-10k", ("koniq10k_scores_and_distributions.csv", "koniq10k_distributions_sets.csv"),
                    "1024x768", (1.0, 5.0), True, ("train", "val", "test", "all"), "test", _read_koniq, 10073),
        DatasetInfo("spaq", "SPAQ", ("Annotations/MOS and Image attribute scores.xlsx",), "TestImage",
                    (0.0, 100.0), True, ("train", "test", "all"), "test", _read_spaq, 11125),
        DatasetInfo("livec", "LIVE Challenge", ("Data/AllImages_release.mat", "Data/AllMOS_release.mat"), "Images",
                    (0.0, 100.0), True, ("all",), "all", _read_livec, 1162),
        DatasetInfo("agiqa3k", "AGIQA-3K", ("data.csv",), "images", (0.0, 5.0), True, ("all",), "all",
                    _read_agiqa, 2982),
        DatasetInfo("kadid10k", "KADID-10K", ("dmos.csv",), "images", (1.0, 5.0), True, ("all", "test"), "all",
                    _read_kadid, 10125),
        DatasetInfo("csiq", "CSIQ", ("csiq.DMOS.xlsx",), "dst_imgs", (0.0, 1.0), False, ("all",), "all",
                    _read_csiq, 866),
    )
}


def get_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` for ``name``; an unknown name lists the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown IQA dataset {name!r}; expected one of {sorted(DATASETS)}") from None


def rescale(raw, lo: float, hi: float, higher_is_better: bool = True) -> np.ndarray:
    """Map raw scores on [lo, hi] linearly onto [0, 5), best = high, clipped to [0, MOS_TOP].

    ``5 * (x - lo) / (hi - lo)`` (or ``5 * (hi - x) / (hi - lo)`` when lower is better).

    >>> rescale([50.0], 0, 100).tolist()
    [2.5]
    """
    x = np.asarray(raw, dtype=float)
    if hi <= lo:
        raise ValueError(f"bad range ({lo}, {hi}); expected lo < hi")
    y = (x - lo) / (hi - lo) if higher_is_better else (hi - x) / (hi - lo)
    return np.clip(5.0 * y, 0.0, MOS_TOP)


def load_iqa(name: str, root: str | Path, split: str | None = None, image_dir: str | None = None) -> pd.DataFrame:
    """Load one IQA dataset from its distributed files under ``root``.

    Returns columns ``dataset``, ``image`` (absolute path), ``mos_raw``, ``mos`` (on [0, 5),
    higher = better), ``split`` and the reader's extra columns, in the labels file's order.
    ``split`` defaults to the dataset's default split (see :data:`DATASETS`); ``"all"`` keeps
    every row. ``image_dir`` overrides the image folder (relative to ``root`` or absolute), e.g.
    ``"512x384"`` for KonIQ.
    """
    info = get_info(name)
    split = info.default_split if split is None else split
    if split not in info.splits:
        raise ValueError(f"{info.title}: unknown split {split!r}; expected one of {list(info.splits)}")
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: {info.title} folder not found; expected {list(info.labels)} and "
                                f"{info.image_dir}/ inside")
    table = info.reader(info, root).reset_index(drop=True)
    dup = table["name"].duplicated()
    if dup.any():
        raise ValueError(f"{root / info.labels[0]}: {int(dup.sum())} duplicated image name(s) "
                         f"(first: {table.loc[dup, 'name'].head(3).tolist()}); expected one row per image")
    if split != "all":
        table = table[table["split"] == split].reset_index(drop=True)
    folder = root / (image_dir or info.image_dir)
    lo, hi = info.raw_range
    out = pd.DataFrame({
        "dataset": info.name,
        "image": [str(folder / n) for n in table["name"]],
        "mos_raw": table["mos_raw"].to_numpy(dtype=float),
        "mos": rescale(table["mos_raw"], lo, hi, info.higher_is_better),
        "split": table["split"].astype(str).to_numpy(),
    })
    extra = table.drop(columns=["name", "mos_raw", "split"])
    return pd.concat([out, extra], axis=1)


# --------------------------------------------------------------------------------------------
# your own labels


def _label_records(path: Path) -> tuple[list[dict], list[int]]:
    """The rows of a CSV (header line 1) or JSONL labels file and the file line of each row."""
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        rows, lines = [], []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}, line {n}: not a JSON object ({e.msg}); expected one labels record "
                                 "per line") from None
            if not isinstance(rec, dict):
                raise ValueError(f"{path}, line {n}: a {type(rec).__name__}; expected a JSON object per line")
            rows.append(rec)
            lines.append(n)
        return rows, lines
    if path.suffix.lower() in (".csv", ".tsv", ".txt"):
        df = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",", dtype=str, keep_default_na=False)
        return df.to_dict("records"), list(range(2, len(df) + 2))
    raise ValueError(f"{path}: labels file must be .csv, .tsv or .jsonl; got {path.suffix or 'no suffix'!r}")


def load_labels(path: str | Path, image_dir: str | Path | None = None, image_column: str = "image",
                mos_column: str = "mos", mos_range: tuple[float, float] | None = None, higher_is_better: bool = True,
                split_column: str | None = None, std_column: str | None = None, name: str | None = None,
                check_files: bool = True) -> pd.DataFrame:
    r"""Your own quality labels, from a CSV / JSONL with an image path and a MOS per row.

    Returns :func:`load_iqa`'s columns: ``dataset`` (``name``, default the file's stem),
    ``image`` (absolute; relative paths are under ``image_dir``, itself relative to the labels
    file's folder, default that folder), ``mos_raw``, ``mos`` (rescaled from the declared
    ``mos_range = (lo, hi)`` to [0, 5), higher = better; ``higher_is_better=False`` for a
    distortion score such as DMOS) and ``split`` (``split_column``'s value: train / val / test, or
    KonIQ's training / validation / test; ``all`` without a split column), plus ``mos_std`` (the
    ``std_column`` on the same [0, 5) scale) when given.

    Every bad row raises a ``ValueError`` naming the file, the line and what was expected: a missing
    column, an empty or missing image (``check_files``), a duplicated image, a non-numeric MOS or
    standard deviation, a MOS outside the declared range, an unknown split value.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "a.png").write_bytes(b""); _ = (d / "b.png").write_bytes(b"")
    >>> _ = (d / "labels.csv").write_text("image,mos\na.png,1\nb.png,10\n")
    >>> load_labels(d / "labels.csv", mos_range=(1, 10))[["mos_raw", "mos", "split"]].values.tolist()
    [[1.0, 0.0, 'all'], [10.0, 4.99, 'all']]
    >>> _ = (d / "bad.csv").write_text("image,mos\na.png,1\nb.png,eleven\n")
    >>> try:
    ...     load_labels(d / "bad.csv", mos_range=(1, 10))
    ... except ValueError as e:
    ...     print(str(e).split(", ", 1)[1])
    line 3: mos = 'eleven'; expected a number in the declared range [1.0, 10.0]
    """
    path = Path(path).expanduser().resolve()
    _need(path, f"a labels file (CSV or JSONL) with columns {image_column!r} and {mos_column!r}")
    if mos_range is None or len(mos_range) != 2:
        raise ValueError(f"{path}: declare the MOS range, mos_range=(lo, hi) (config: range: [lo, hi]); "
                         f"got {mos_range!r}")
    lo, hi = float(mos_range[0]), float(mos_range[1])
    if not lo < hi:
        raise ValueError(f"{path}: mos_range ({lo}, {hi}); expected lo < hi")
    folder = path.parent if image_dir is None else Path(image_dir).expanduser()
    folder = (folder if folder.is_absolute() else path.parent / folder).resolve()
    records, lines = _label_records(path)
    if not records:
        raise ValueError(f"{path}: no label rows; expected one row per image")
    needed = [c for c in (image_column, mos_column, split_column, std_column) if c]
    for rec, line in zip(records, lines):
        missing = [c for c in needed if c not in rec]
        if missing:
            raise ValueError(f"{path}, line {line}: no column(s) {missing}; found {sorted(rec)}")

    def number(rec, line, column, bounds=None):
        v = rec[column]
        try:
            x = float(v) if not isinstance(v, bool) and str(v).strip() != "" else float("nan")
        except (TypeError, ValueError):
            x = float("nan")
        rule = f"a number in the declared range [{lo}, {hi}]" if bounds else "a non-negative number"
        if not np.isfinite(x) or (bounds and not lo <= x <= hi) or (not bounds and x < 0):
            raise ValueError(f"{path}, line {line}: {column} = {v!r}; expected {rule}")
        return x

    images, raw, split, std, seen = [], [], [], [], {}
    for rec, line in zip(records, lines):
        cell = rec[image_column]
        if not isinstance(cell, str) or not cell.strip():
            raise ValueError(f"{path}, line {line}: {image_column} = {cell!r}; expected an image path")
        p = Path(cell.strip()).expanduser()
        p = p if p.is_absolute() else folder / p
        if check_files and not p.is_file():
            raise ValueError(f"{path}, line {line}: image {cell.strip()!r} not found at {p}; expected an existing "
                             f"image file (relative paths are under {folder})")
        if str(p) in seen:
            raise ValueError(f"{path}, line {line}: image {cell.strip()!r} already labelled on line {seen[str(p)]}; "
                             "expected one row per image")
        seen[str(p)] = line
        images.append(str(p))
        raw.append(number(rec, line, mos_column, bounds=True))
        if split_column:
            v = str(rec[split_column]).strip().lower()
            if v not in SPLIT_ALIASES and v != "all":
                raise ValueError(f"{path}, line {line}: {split_column} = {rec[split_column]!r}; expected one of "
                                 f"train, val, test (or {', '.join(k for k in SPLIT_ALIASES if k not in ('train', 'val', 'test'))})")
            split.append(SPLIT_ALIASES.get(v, v))
        if std_column:
            std.append(number(rec, line, std_column))
    out = pd.DataFrame({
        "dataset": name or path.stem,
        "image": images,
        "mos_raw": np.asarray(raw, dtype=float),
        "mos": rescale(raw, lo, hi, higher_is_better),
        "split": split if split_column else "all",
    })
    if std_column:
        out["mos_std"] = 5.0 * np.asarray(std, dtype=float) / (hi - lo)
    return out


# --------------------------------------------------------------------------------------------
# Q-Bench A1 (LLVisionQA)


def load_qbench(root: str | Path, split: str = "dev", require_answers: bool = True,
                image_dir: str = "images") -> pd.DataFrame:
    """Read Q-Bench A1 ``llvisionqa_{split}.json`` under ``root`` (images under ``image_dir``).

    Columns: ``dataset``, ``id`` (record index), ``image``, ``question``, ``candidates`` (list of
    2-4 texts), ``answer`` (text, or None), ``answer_index`` (position in ``candidates``, -1 when
    unknown), ``type``/``type_name`` (0 yes_no, 1 what, 2 how), ``concern``/``concern_name``
    (0 technical, 1 other, 2 incontext_technical, 3 incontext_other), ``split``, ``scorable``.

    The public **test** split carries no answers. With ``require_answers=True`` (the default, what
    every scoring evaluator must use) such a file raises a ValueError explaining why; with
    ``require_answers=False`` it loads for inference only, with ``answer=None`` and
    ``scorable=False``, so it can never be scored by accident.
    """
    if split not in ("dev", "test"):
        raise ValueError(f"Q-Bench: unknown split {split!r}; expected 'dev' or 'test'")
    root = Path(root).expanduser().resolve()
    path = _need(root / f"llvisionqa_{split}.json",
                 "Q-Bench A1 questions (img_path, question, candidates, correct_ans, type, concern)")
    text = path.read_text(encoding="utf-8")
    try:
        records = json.loads(text)
    except json.JSONDecodeError:
        try:  # some redistributions store one JSON object per line
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: neither a JSON list nor JSON lines ({e})") from e
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected a JSON list of question records, found {type(records).__name__}")
    rows, unanswered = [], 0
    for i, r in enumerate(records):
        where = f"{path}: record {i}"
        missing = [k for k in ("img_path", "question", "candidates", "type", "concern") if k not in r]
        if missing:
            raise ValueError(f"{where}: missing key(s) {missing}; found {sorted(r)}")
        cands = [str(c) for c in r["candidates"]]
        if not 2 <= len(cands) <= 4:
            raise ValueError(f"{where}: {len(cands)} candidates; expected 2-4")
        if r["type"] not in QBENCH_TYPES or r["concern"] not in QBENCH_CONCERNS:
            raise ValueError(f"{where}: type={r['type']!r}, concern={r['concern']!r}; expected type in "
                             f"{QBENCH_TYPES} and concern in {QBENCH_CONCERNS}")
        answer = r.get("correct_ans")
        if answer is None:
            unanswered += 1
            index = -1
        else:
            answer = str(answer)
            if answer not in cands:
                raise ValueError(f"{where}: correct_ans {answer!r} is not one of the candidates {cands}")
            index = cands.index(answer)
        rows.append({"dataset": "qbench", "id": i, "image": str(root / image_dir / r["img_path"]),
                     "question": str(r["question"]), "candidates": cands, "answer": answer,
                     "answer_index": index, "type": int(r["type"]), "type_name": QBENCH_TYPES[r["type"]],
                     "concern": int(r["concern"]), "concern_name": QBENCH_CONCERNS[r["concern"]],
                     "split": split, "scorable": answer is not None})
    if unanswered and require_answers:
        raise ValueError(
            f"{path}: {unanswered} of {len(records)} questions have no 'correct_ans'. The public Q-Bench "
            "test split ships without answers (they are scored by the Q-Bench team), so it cannot be "
            "scored here: evaluate on split='dev' (1,495 answered questions), or pass "
            "require_answers=False to load the questions for inference only (scorable=False)."
        )
    return pd.DataFrame(rows, columns=["dataset", "id", "image", "question", "candidates", "answer",
                                       "answer_index", "type", "type_name", "concern", "concern_name",
                                       "split", "scorable"])
