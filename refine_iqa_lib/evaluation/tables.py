"""Tables 1-6 of the paper, regenerated in the paper's layout with our numbers beside the paper's.

The paper's numbers are data (``results/paper/table{1..6}.csv``, see ``results/paper/README.md``);
ours are read from the JSON files the evaluators write. :func:`build_table` returns, for every
row of the paper's table, a ``paper`` row and (where this project can produce it) an
``ours (<profile>)`` row; a row we cannot produce carries a ``note`` saying why, and an ``ours``
row with missing result files names them in its ``note``. :func:`write_table` writes CSV,
Markdown and LaTeX; :func:`our_table` does both for a configuration (what notebooks 05-08 call).

Result files (the schema evaluators write; one file per evaluation, fractions in [0, 1])
----------------------------------------------------------------------------------------------
Under ``results/<profile>/``:

* ``scoring/<model>__<dataset>__<mode>__<method>.json`` (Tables 3, 5, 6)::

      {"model": "s2", "dataset": "koniq", "mode": "no_think", "method": "prob",
       "srcc": 0.51, "plcc": 0.49, "plcc_kind": "raw", "n": 2015, "n_nan": 0, "profile": "tiny"}

  ``dataset`` is a key of ``refine_iqa_lib.data.iqa.DATASETS``; ``mode`` is ``think`` or
  ``no_think``; ``method`` is ``prob`` (Eq. 8 expectation) or ``num`` (parsed number);
  ``srcc``/``plcc``/``plcc_kind``/``n``/``n_nan`` are ``metrics.correlation_report``'s output.
* ``perception/<model>.json`` (Tables 1, 2; no-think mode)::

      {"model": "s1", "profile": "tiny", "mode": "no_think", "n": 1500,
       "description": {"blur": 0.91, ..., "quantization": 0.37, "easy": 0.9, "hard": 0.6, "overall": 0.76},
       "grounding":   {"blur": 0.95, ..., "quantization": 0.31, "easy": 0.9, "hard": 0.6, "overall": 0.77}}

  ``description`` holds accuracies (type, object and severity all right), ``grounding`` mean IoU,
  keyed by the category names in :data:`PERCEPTION_CATEGORIES` plus ``easy``/``hard``/``overall``.
* ``qbench/<model>__<mode>.json`` (Tables 4, 5, 6)::

      {"model": "s2", "mode": "think", "profile": "tiny", "split": "dev", "n": 1495,
       "accuracy": {"yes_no": 0.84, "what": 0.85, "how": 0.73, "technical": 0.81, "other": 0.80,
                    "incontext_technical": 0.81, "incontext_other": 0.83, "overall": 0.81}}

* Checkpoints scored by ``refine-iqa evaluate`` carry the model name ``evaluated:<folder>``
  (:func:`refine_iqa_lib.runs.evaluated_name`); Tables 3 and 4 add one ``evaluated here`` row
  per such model and mode after the paper's rows (section :data:`EVALUATED_SECTION`).
* Ablations (Tables 5, 6) are ordinary runs with their own model name and the same files:
  :data:`RUNS` maps the roles to names (``s2_no_stage1``, ``s2_no_pd``, ``s2_no_pm``); the
  numeric-inference row of Table 6 is model ``s2`` with ``method="num"``.

``ours`` may also be a dict ``{"scoring": [...], "perception": [...], "qbench": [...]}`` of such
records, or the long DataFrame :func:`load_results` returns.

Intervals
---------
Every record carries ``ci`` (the evaluators' 95 % bootstrap intervals, mirroring its values:
``{"low", "high", "n"}`` leaves; :mod:`refine_iqa_lib.evaluation.statistics`). Our cells take
their interval from there; the scoring entry of Tables 5-6 (mean of SRCC and PLCC) from the
record's ``ci.srcc_plcc_mean``. The **Advantage** rows of Tables 1-2 (S1 - base) are paired
bootstrap intervals over the images both models answered, computed from the per-image values
(:mod:`refine_iqa_lib.evaluation.items`) when ``build_table`` is given the ``predictions``
folder; without it they are left open (and say so). ``build_table`` keeps them in
``df.attrs["intervals"]`` (row position -> column -> ``[low, high, n]``). The written CSV is
**long**: one row per (table row, column) with ``value``, ``ci_low``, ``ci_high``, ``n``
(:func:`long_table`); Markdown and LaTeX keep the paper's layout and show ``0.62 [0.55, 0.69]``.
The paper's rows have no intervals.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from refine_iqa_lib.config import Config
from refine_iqa_lib.io import read_json, write_text
from refine_iqa_lib.runs import EVALUATED_PREFIX, is_evaluated

#: Repository copy of the paper's numbers.
PAPER_DIR = Path(__file__).resolve().parents[2] / "results" / "paper"

#: Snake-case category key -> the paper's column header (Tables 1-2), in the paper's order.
PERCEPTION_CATEGORIES = {
    "blur": "Blur", "noise": "Noise", "compression": "Comp.", "overexposure": "OE", "underexposure": "UE",
    "oversaturation": "OSat.", "desaturation": "DSat.", "oversharpening": "OSharp.", "high_contrast": "HC",
    "low_contrast": "LC", "pixelation": "Pixel.", "quantization": "Quant.",
}
EASY_HEADERS = ("Blur", "Noise", "Comp.", "OE", "UE")
HARD_HEADERS = ("OSat.", "DSat.", "OSharp.", "HC", "LC", "Pixel.", "Quant.")
#: Other spellings accepted for perception keys (the distortion engine's family names).
_CATEGORY_ALIASES = {
    "brighten": "overexposure", "darken": "underexposure", "oversaturate": "oversaturation",
    "desaturate": "desaturation", "oversharpen": "oversharpening", "pixelate": "pixelation",
    "contrast_strengthen": "high_contrast", "contrast_weaken": "low_contrast",
}
#: Table 3 header -> dataset key; Tables 5-6 scoring header -> dataset key.
T3_DATASETS = {"KONIQ": "koniq", "SPAQ": "spaq", "LIVE-C": "livec", "AGIQA-3K": "agiqa3k",
               "KADID-10K": "kadid10k", "CSIQ": "csiq"}
T56_DATASETS = {"KonIQ": "koniq", "AGIQA": "agiqa3k", "SPAQ": "spaq", "KADID": "kadid10k"}
#: Table 4 header -> Q-Bench accuracy key; Tables 5-6 interpret header -> key.
T4_KEYS = {"Binary": "yes_no", "What": "what", "How": "how", "Technical": "technical", "Other": "other",
           "In-context Technical": "incontext_technical", "In-context Other": "incontext_other",
           "Overall": "overall"}
T56_INTERPRET = {"Tech.": "technical", "Overall": "overall"}
#: Role -> model (run) name in the result files.
RUNS = {"base": "base", "s1": "s1", "s2": "s2", "no_stage1": "s2_no_stage1", "no_pd": "s2_no_pd",
        "no_pm": "s2_no_pm"}

#: Section label of the rows of checkpoints scored by ``refine-iqa evaluate`` (Tables 3-4).
EVALUATED_SECTION = "Evaluated here (refine-iqa evaluate)"

LONG_COLUMNS = ["kind", "model", "mode", "method", "group", "metric", "value", "plcc_kind", "file",
                "ci_low", "ci_high", "n_items"]
#: Columns of the written (long) table CSV after the label columns and ``source``.
CSV_COLUMNS = ["column", "value", "ci_low", "ci_high", "n", "note"]


# --------------------------------------------------------------------------------------------
# reading our results


def _norm_category(key: str) -> str:
    k = str(key).strip()
    headers = {v.lower(): c for c, v in PERCEPTION_CATEGORIES.items()}
    if k.lower() in headers:
        return headers[k.lower()]
    k = k.lower().replace(" ", "_").replace("-", "_")
    return _CATEGORY_ALIASES.get(k, k)


def _records_to_long(kind: str, rec: Mapping[str, Any], where: str, profile: str | None) -> list[dict]:
    need = {"scoring": ("model", "dataset", "mode", "method", "srcc", "plcc"),
            "perception": ("model",), "qbench": ("model", "mode", "accuracy")}[kind]
    missing = [k for k in need if k not in rec]
    if missing:
        raise ValueError(f"{where}: {kind} result missing key(s) {missing}; found {sorted(rec)}")
    if profile is not None and rec.get("profile", profile) != profile:
        raise ValueError(f"{where}: profile {rec['profile']!r} in a {profile!r} result; expected {profile!r}")
    base = {"kind": kind, "model": str(rec["model"]), "mode": str(rec.get("mode", "no_think")),
            "method": str(rec.get("method", "")), "plcc_kind": rec.get("plcc_kind"), "file": where}
    rows = []
    ci = rec.get("ci") if isinstance(rec.get("ci"), Mapping) else {}

    def bounds(leaf) -> dict:
        leaf = leaf if isinstance(leaf, Mapping) else {}
        return {"ci_low": leaf.get("low"), "ci_high": leaf.get("high"), "n_items": leaf.get("n")}

    if kind == "scoring":
        for metric in ("srcc", "plcc", "n", "n_nan", "n_unparsable", "parse_failure_rate"):
            if metric in rec:
                rows.append({**base, "group": str(rec["dataset"]), "metric": metric, "value": rec[metric],
                             **bounds(ci.get(metric))})
        pair = [rec.get("srcc"), rec.get("plcc")]
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pair)
        mean = 0.5 * (float(pair[0]) + float(pair[1])) if numbers else None
        rows.append({**base, "group": str(rec["dataset"]), "metric": "srcc_plcc_mean", "value": mean,
                     **bounds(ci.get("srcc_plcc_mean"))})
    elif kind == "perception":
        tasks = [t for t in ("description", "grounding") if isinstance(rec.get(t), Mapping)]
        if not tasks:
            raise ValueError(f"{where}: perception result has neither 'description' nor 'grounding' mapping")
        for task in tasks:
            leaves = ci.get(task) if isinstance(ci.get(task), Mapping) else {}
            rows += [{**base, "group": task, "metric": _norm_category(k), "value": v, **bounds(leaves.get(k))}
                     for k, v in rec[task].items()]
    else:
        if not isinstance(rec["accuracy"], Mapping):
            raise ValueError(f"{where}: 'accuracy' must map question type/concern to accuracy")
        leaves = ci.get("accuracy") if isinstance(ci.get("accuracy"), Mapping) else {}
        rows += [{**base, "group": str(rec.get("split", "dev")), "metric": k, "value": v, **bounds(leaves.get(k))}
                 for k, v in rec["accuracy"].items()]
    for r in rows:
        for key in ("value", "ci_low", "ci_high", "n_items"):
            try:
                r[key] = float("nan") if r[key] is None else float(r[key])
            except (TypeError, ValueError):
                what = f"{r['group']}.{r['metric']}" + ("" if key == "value" else f" {key}")
                raise ValueError(f"{where}: {what} = {r[key]!r}; expected a number") from None
    return rows


def _checked(long: pd.DataFrame) -> pd.DataFrame:
    """Refuse two records for the same value (which one a table shows would be arbitrary)."""
    key = ["kind", "model", "mode", "method", "group", "metric"]
    keyed = long.assign(group=long["group"].where(long["kind"] != "qbench", ""))  # one Q-Bench split per run
    dup = long[keyed.duplicated(key, keep=False)]
    if not dup.empty:
        first = dup.iloc[0]
        same = (keyed.loc[dup.index, key] == keyed.loc[dup.index[0], key]).all(axis=1)
        files = sorted(set(dup.loc[same, "file"].astype(str)))
        raise ValueError(f"{len(dup)} duplicated result values, e.g. {first['kind']} {first['model']} "
                         f"{first['group']}.{first['metric']} in {files}; expected one record each")
    return long


def load_results(results_dir: str | Path, profile: str) -> pd.DataFrame:
    """Read every result JSON under ``results_dir/<profile>/{scoring,perception,qbench}/``.

    ``results_dir`` may also be the profile folder itself. Returns the long DataFrame
    (:data:`LONG_COLUMNS`); an absent folder gives no rows, a malformed file raises naming it.
    """
    root = Path(results_dir)
    if (root / profile).is_dir():
        root = root / profile
    rows: list[dict] = []
    for kind in ("scoring", "perception", "qbench"):
        for path in sorted((root / kind).glob("*.json")):
            rec = read_json(path)
            if not isinstance(rec, Mapping):
                raise ValueError(f"{path}: expected a JSON object, found {type(rec).__name__}")
            rows += _records_to_long(kind, rec, str(path), profile)
    return _checked(pd.DataFrame(rows, columns=LONG_COLUMNS))


def _as_long(ours, profile: str) -> pd.DataFrame:
    if ours is None:
        return pd.DataFrame(columns=LONG_COLUMNS)
    if isinstance(ours, pd.DataFrame):
        optional = ("plcc_kind", "file", "ci_low", "ci_high", "n_items")
        missing = [c for c in LONG_COLUMNS if c not in ours.columns and c not in optional]
        if missing:
            raise ValueError(f"results DataFrame missing column(s) {missing}; expected {LONG_COLUMNS} "
                             "(as load_results returns)")
        return _checked(ours.reindex(columns=LONG_COLUMNS))
    if isinstance(ours, Mapping):
        unknown = sorted(set(ours) - {"scoring", "perception", "qbench"})
        if unknown:
            raise ValueError(f"results dict has unknown key(s) {unknown}; expected scoring, perception, qbench")
        rows = []
        for kind, recs in ours.items():
            for i, rec in enumerate(recs):
                rows += _records_to_long(kind, rec, f"{kind}[{i}]", profile)
        return _checked(pd.DataFrame(rows, columns=LONG_COLUMNS))
    return load_results(ours, profile)


class _Lookup:
    """Finds values in the long results; remembers the records used and the expected files missing."""

    def __init__(self, long: pd.DataFrame):
        self.long = long
        self.missing: list[str] = []
        self.used: set[tuple] = set()

    def _select(self, kind: str, model: str, group: str, mode: str, method: str) -> pd.Series:
        d = self.long
        sel = (d["kind"] == kind) & (d["model"] == model) & (d["mode"] == mode)
        if kind == "qbench":  # the split is recorded, not selected: a run has one Q-Bench result per mode
            return sel
        sel &= d["group"] == group
        return sel & (d["method"] == method) if kind == "scoring" else sel

    def get(self, kind: str, model: str, group: str, metric: str, mode: str = "no_think", method: str = "") -> float:
        return self.get_interval(kind, model, group, metric, mode, method)[0]

    def get_interval(self, kind: str, model: str, group: str, metric: str, mode: str = "no_think",
                     method: str = "") -> tuple[float, float, float, float]:
        """``(value, ci_low, ci_high, n)`` of one value (NaN where missing)."""
        sel = self._select(kind, model, group, mode, method) & (self.long["metric"] == metric)
        hit = self.long[sel]
        if hit.empty:
            file = {"scoring": f"scoring/{model}__{group}__{mode}__{method}.json",
                    "perception": f"perception/{model}.json", "qbench": f"qbench/{model}__{mode}.json"}[kind]
            d = self.long
            exists = ((d["kind"] == kind) & (d["model"] == model) & (d["mode"] == mode)).any()
            key = f"{group}.{metric}" if kind == "perception" else metric
            self.missing.append(file if kind == "scoring" or not exists else f"{file}[{key}]")
            return (float("nan"),) * 4
        self.used.add((kind, model, group, mode, method))
        row = hit.iloc[0]
        return tuple(float(row[c]) if c in hit.columns and pd.notna(row[c]) else float("nan")
                     for c in ("value", "ci_low", "ci_high", "n_items"))

    def records_note(self) -> str:
        """PLCC kind(s) and excluded NaN predictions of the scoring records used; a non-dev Q-Bench split."""
        parts = []
        keys = [k for k in self.used if k[0] == "scoring"]
        if keys:
            s = pd.concat([self.long[self._select(*k)] for k in sorted(keys)])
            kinds = sorted({str(k) for k in s["plcc_kind"].dropna()})
            parts += [f"PLCC {'/'.join(kinds)}"] if kinds else []
            n_nan = s.loc[s["metric"] == "n_nan", "value"].sum()
            if n_nan:
                parts.append(f"{int(n_nan)} unparsable prediction(s) excluded")
            failed = s.loc[s["metric"] == "n_unparsable", "value"].sum() - n_nan
            if failed > 0:
                parts.append(f"{int(failed)} unparsable prediction(s) given the fallback score (eval.unparsable)")
            if s.loc[s["metric"].isin(["srcc", "plcc"]), "value"].isna().any():
                parts.append("some correlations undefined (null in the result file)")
        q = [self.long[self._select(*k)] for k in sorted(self.used) if k[0] == "qbench"]
        splits = sorted(set(pd.concat(q)["group"])) if q else []
        if splits and splits != ["dev"]:
            parts.append(f"Q-Bench split {'/'.join(splits)}")
        return "; ".join(parts)


# --------------------------------------------------------------------------------------------
# table layouts


@dataclass(frozen=True)
class TableSpec:
    """Layout of one paper table: label columns, value columns, groups, units, caption."""

    n: int
    caption: str
    label_cols: tuple[str, ...]
    value_cols: tuple[str, ...]
    groups: dict[str, tuple[str, ...]]
    decimals: dict[str, int]
    percent: tuple[str, ...] = ()


def _spec(n: int) -> TableSpec:
    cats = tuple(PERCEPTION_CATEGORIES.values()) + ("Overall",)
    t3 = tuple(f"{d} {m}" for d in T3_DATASETS for m in ("SRCC", "PLCC"))
    t56 = tuple(T56_DATASETS) + tuple(T56_INTERPRET)
    specs = {
        1: TableSpec(1, "Description accuracy (%) on Refine-Perception-20K-test (no-think mode).", ("Models",),
                     cats, {"EASY": EASY_HEADERS, "HARD": HARD_HEADERS}, {c: 2 for c in cats}, cats),
        2: TableSpec(2, "Grounding performance (mean IoU) on Refine-Perception-20K-test.", ("Models",), cats,
                     {"EASY": EASY_HEADERS, "HARD": HARD_HEADERS}, {c: 3 for c in cats}),
        3: TableSpec(3, "Quality scoring (SRCC / PLCC). The paper does not say whether its PLCC is raw or "
                        "logistic-fitted; ours says so in its note.", ("section", "Models"), t3,
                     {d: (f"{d} SRCC", f"{d} PLCC") for d in T3_DATASETS}, {c: 3 for c in t3}),
        4: TableSpec(4, ("Q-Bench A1 accuracy (%), greedy answers. The paper scores the test split; ours "
                        "is the dev split (test answers are not public)."), ("section", "Models"), tuple(T4_KEYS),
                     {"QUESTION TYPES": ("Binary", "What", "How"),
                      "QUALITY CONCERNS": ("Technical", "Other", "In-context Technical", "In-context Other")},
                     {c: 2 for c in T4_KEYS}, tuple(T4_KEYS)),
        5: TableSpec(5, "Ablation of Stage-1 (Refine-IQA-S2, no-think). Scoring = mean of SRCC and PLCC; "
                        "interpreting = Q-Bench accuracy (%).", ("TRAIN",), t56,
                     {"SCORING": tuple(T56_DATASETS), "INTERPRET": tuple(T56_INTERPRET)},
                     {**{c: 3 for c in T56_DATASETS}, **{c: 2 for c in T56_INTERPRET}}, tuple(T56_INTERPRET)),
        6: TableSpec(6, "Ablation of Stage-2 attributes (Refine-IQA-S2, no-think): PD reward, policy-gradient "
                        "modification (PM), numeric vs probability-based inference.",
                     ("PD", "PM", "Num.", "Prob."), t56,
                     {"TRAIN": ("PD", "PM"), "INFERENCE": ("Num.", "Prob."), "SCORING": tuple(T56_DATASETS),
                      "INTERPRET": tuple(T56_INTERPRET)},
                     {**{c: 3 for c in T56_DATASETS}, **{c: 2 for c in T56_INTERPRET}}, tuple(T56_INTERPRET)),
    }
    if n not in specs:
        raise ValueError(f"no Table {n}; expected 1-6")
    return specs[n]


def load_paper_table(n: int, paper_dir: str | Path | None = None) -> pd.DataFrame:
    """The paper's Table ``n`` as transcribed in ``results/paper/table<n>.csv``."""
    spec = _spec(n)
    path = Path(paper_dir or PAPER_DIR) / f"table{n}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; expected the paper's Table {n} (results/paper/README.md)")
    df = pd.read_csv(path)
    missing = [c for c in spec.label_cols + spec.value_cols if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; expected {list(spec.label_cols + spec.value_cols)}")
    for c in ("PD", "PM", "Num.", "Prob."):
        if c in df.columns:
            df[c] = df[c].astype(str).str.strip().map({"True": True, "False": False})
    return df


# Paper rows we reproduce: label -> role (and mode). Every other row gets a paper-only note.
_T4_OURS = {"Qwen2.5-VL-7B (Bai et al. 2025) (w/o think)": ("base", "no_think"),
            "Qwen2.5-VL-7B (w think)": ("base", "think"), "Refine-IQA-S1": ("s1", "no_think"),
            "Refine-IQA-S2 (w/o think)": ("s2", "no_think"), "Refine-IQA-S2 (w think)": ("s2", "think")}
_T3_OURS = {"Refine-IQA-S2 (w think)": ("s2", "think"), "Refine-IQA-S2 (w/o think)": ("s2", "no_think")}
_T12_OURS = {"Qwen2.5-VL-7B (base)": "base", "Refine-IQA-S1": "s1", "Refine-IQA-S2": "s2"}
_PAPER_ONLY = {
    "Performance of Deep Neural Network (DNN)-Based Models":
        "not an LMM and not a Refine-IQA model; paper number only",
    "Performance of SFT-Based Domain-Specific LMMs":
        "pretrained comparison LMM (weights not used here); paper number only",
    "Performance of RL-Based Domain-Specific LMMs":
        "comparison RL model, not retrained at this scale; paper number only",
    "Performance of Open-sourced General LMMs": "general LMM, not evaluated here; paper number only",
    "Performance of Proprietary General LMMs": "proprietary API model, not evaluated here; paper number only",
    "Performance of Open-sourced Domain Specific LMMs": "comparison IQA LMM, not evaluated here; paper number only",
}


def _advantage_intervals(spec: TableSpec, task: str, scale: float, runs: Mapping[str, str], predictions,
                         seed: int = 0) -> dict:
    """Paired bootstrap intervals of S1 - base per column, over the images both models answered."""
    from refine_iqa_lib.evaluation.items import matched, perception_values
    from refine_iqa_lib.evaluation.statistics import paired_difference_ci

    s1, base = (perception_values(predictions, runs[r], task) for r in ("s1", "base"))
    s1, base = matched(s1, base)
    key = s1["category"].map(_norm_category)
    heads = {v: k for k, v in PERCEPTION_CATEGORIES.items()}
    out = {}
    for c in spec.value_cols:
        wanted = tuple(PERCEPTION_CATEGORIES) if c == "Overall" else (heads[c],)
        sel = key.isin(wanted).to_numpy()
        iv = paired_difference_ci(s1["value"].to_numpy()[sel], base["value"].to_numpy()[sel], "mean", seed=seed)
        out[c] = (scale * iv.low, scale * iv.high, float(iv.n))
    return out


def _ours_values(n: int, paper_row: pd.Series, spec: TableSpec, look: _Lookup, runs: Mapping[str, str],
                 predictions=None):
    """Our values for one paper row, ``(values, note, intervals)``, or None when this project does
    not produce that row. ``intervals``: column -> ``(low, high, n)``."""
    label = paper_row[spec.label_cols[-1]]
    cis: dict = {}

    def take(col: str, got: tuple, scale: float = 1.0) -> float:
        cis[col] = (scale * got[1], scale * got[2], got[3])
        return scale * got[0]

    if n in (1, 2):
        task = "description" if n == 1 else "grounding"
        scale = 100.0 if n == 1 else 1.0
        keys = {**{v: k for k, v in PERCEPTION_CATEGORIES.items()}, "Overall": "overall"}
        grab = lambda role: {c: look.get_interval("perception", runs[role], task, keys[c]) for c in spec.value_cols}
        if label == "Advantage":
            s1, base = grab("s1"), grab("base")
            vals = {c: scale * (s1[c][0] - base[c][0]) for c in spec.value_cols}
            note = "computed: Refine-IQA-S1 - base"
            try:
                cis = _advantage_intervals(spec, task, scale, runs, predictions) if predictions else {}
                note += "; paired bootstrap over the same images" if cis else "; no interval (per-image values not given)"
            except FileNotFoundError as e:
                note += f"; no interval ({e})"
            return vals, note, cis
        if label in _T12_OURS:
            got = grab(_T12_OURS[label])
            return {c: take(c, got[c], scale) for c in spec.value_cols}, "", cis
        return None
    if n == 3:
        if label not in _T3_OURS:
            return None
        role, mode = _T3_OURS[label]
        vals = {c: take(c, look.get_interval("scoring", runs[role], T3_DATASETS[c.rsplit(" ", 1)[0]],
                                             c.rsplit(" ", 1)[1].lower(), mode, "prob")) for c in spec.value_cols}
        return vals, "Eq. 8 (prob) scoring", cis
    if n == 4:
        if label not in _T4_OURS:
            return None
        role, mode = _T4_OURS[label]
        return ({c: take(c, look.get_interval("qbench", runs[role], "dev", T4_KEYS[c], mode), 100.0)
                 for c in spec.value_cols}, "", cis)
    # Tables 5 and 6: scoring = mean(SRCC, PLCC), interpret = Q-Bench accuracy (%)
    if n == 5:
        role, method, interpret = ("no_stage1" if label == "w/o Stage-1" else "s2"), "prob", True
    else:
        flags = tuple(bool(paper_row[c]) for c in ("PD", "PM", "Num.", "Prob."))
        role = {(False, True): "no_pd", (True, False): "no_pm"}.get(flags[:2], "s2")
        method = "num" if flags[2] else "prob"
        interpret = not paper_row[list(T56_INTERPRET)].isna().all()
    vals = {}
    for c, ds in T56_DATASETS.items():
        for m in ("srcc", "plcc"):  # the two halves, so that a missing one is named
            look.get("scoring", runs[role], ds, m, "no_think", method)
        vals[c] = take(c, look.get_interval("scoring", runs[role], ds, "srcc_plcc_mean", "no_think", method))
    for c, key in T56_INTERPRET.items():
        vals[c] = (take(c, look.get_interval("qbench", runs[role], "dev", key, "no_think"), 100.0) if interpret
                   else float("nan"))
    note = f"run {runs[role]!r}, {method} scoring" + ("" if interpret else "; interpreting not evaluated (paper: /)")
    return vals, note, cis


def build_table(n: int, ours=None, profile: str = "tiny", runs: Mapping[str, str] | None = None,
                paper_dir: str | Path | None = None, predictions: str | Path | None = None) -> pd.DataFrame:
    """Table ``n`` (1-6) in the paper's layout: each paper row, followed by ours where we produce it.

    ``ours`` is a results folder (``results/``, read with :func:`load_results` for ``profile``),
    a dict of result records, a long DataFrame, or None (paper only). Columns: the paper's label
    column(s), ``source`` (``paper`` / ``ours (<profile>)``), the paper's value columns (percent
    tables in percent) and ``note``. ``runs`` overrides :data:`RUNS` (role -> model name).
    ``predictions`` (``<work_dir>/eval``) gives the Advantage rows their paired intervals. Our
    cells' intervals are in ``df.attrs["intervals"]`` (see the module docstring).
    """
    spec = _spec(n)
    paper = load_paper_table(n, paper_dir)
    long = _as_long(ours, profile)
    runs = {**RUNS, **(runs or {})}
    rows, intervals = [], {}
    for _, prow in paper.iterrows():
        labels = {c: prow[c] for c in spec.label_cols}
        rows.append({**labels, "source": "paper", **{c: prow[c] for c in spec.value_cols},
                     "note": ""})
        look = _Lookup(long)
        got = _ours_values(n, prow, spec, look, runs, predictions)
        if got is None:
            section = prow.get("section")
            rows[-1]["note"] = _PAPER_ONLY.get(section, "not produced at this scale; paper number only")
            continue
        vals, note, cis = got
        d = {c: spec.decimals[c] + 1 for c in spec.value_cols}
        intervals[len(rows)] = {c: [round(v, d[c]) if math.isfinite(v) else float("nan") for v in cis[c]]
                                for c in spec.value_cols if c in cis and math.isfinite(cis[c][0])}
        if look.missing:
            missing = list(dict.fromkeys(look.missing))
            shown, more = ", ".join(missing[:3]), len(missing) - 3
            shown += f" (+{more} more)" if more > 0 else ""
            note = "; ".join(filter(None, [note, f"missing results: {shown}"]))
        note = "; ".join(filter(None, [note, look.records_note()]))
        rows.append({**labels, "source": f"ours ({profile})",
                     **{c: (round(v, spec.decimals[c]) if math.isfinite(v) else float("nan")) for c, v in vals.items()},
                     "note": note})
    if n in (3, 4):
        rows += _evaluated_rows(n, spec, long, profile)
    df = pd.DataFrame(rows, columns=[*spec.label_cols, "source", *spec.value_cols, "note"])
    df.attrs.update(table=n, caption=f"Table {n}: {spec.caption}", profile=profile, intervals=intervals)
    return df


def _evaluated_rows(n: int, spec: TableSpec, long: pd.DataFrame, profile: str) -> list[dict]:
    """Table 3 / 4 rows of the ``evaluated:<folder>`` models in ``long``: one per model and mode
    recorded, Eq. 8 (prob) scoring for Table 3; columns not evaluated are empty."""
    kind = "scoring" if n == 3 else "qbench"
    mine = long[(long["kind"] == kind) & long["model"].map(is_evaluated)]
    rows = []
    for model in sorted(set(mine["model"])):
        for mode in ("no_think", "think"):
            if not (mine[(mine["model"] == model) & (mine["mode"] == mode)]).size:
                continue
            look = _Lookup(long)
            if n == 3:
                vals = {c: look.get("scoring", model, T3_DATASETS[c.rsplit(" ", 1)[0]], c.rsplit(" ", 1)[1].lower(),
                                    mode, "prob") for c in spec.value_cols}
                note = "Eq. 8 (prob) scoring"  # datasets not evaluated: scale_notes / the empty cells
            else:
                vals = {c: 100.0 * look.get("qbench", model, "dev", T4_KEYS[c], mode) for c in spec.value_cols}
                note = ""
            note = "; ".join(filter(None, [note, look.records_note()]))
            label = f"{model[len(EVALUATED_PREFIX):]} ({'w' if mode == 'think' else 'w/o'} think)"
            labels = dict(zip(spec.label_cols, (EVALUATED_SECTION, label)))
            rows.append({**labels, "source": f"evaluated here ({profile})",
                         **{c: (round(v, spec.decimals[c]) if math.isfinite(v) else float("nan")) for c, v in vals.items()},
                         "note": note})
    return rows


# --------------------------------------------------------------------------------------------
# writing


def long_table(df: pd.DataFrame) -> pd.DataFrame:
    """The table as the CSV stores it: one row per (table row, value column) with ``value``,
    ``ci_low``, ``ci_high`` and ``n`` (items the interval resamples; empty for the paper's rows)."""
    n = df.attrs.get("table")
    spec = _spec(int(n)) if n else None
    value_cols = list(spec.value_cols) if spec else [c for c in df.columns if c not in ("source", "note")]
    labels = [c for c in df.columns[: list(df.columns).index("source") + 1]] if "source" in df.columns else []
    intervals = df.attrs.get("intervals", {})
    rows = []
    for pos, (_, row) in enumerate(df.iterrows()):
        for c in value_cols:
            lo, hi, k = intervals.get(pos, {}).get(c, (float("nan"),) * 3)
            rows.append({**{l: row[l] for l in labels}, "column": c, "value": row[c], "ci_low": lo, "ci_high": hi,
                         "n": int(k) if isinstance(k, (int, float)) and math.isfinite(k) else None,
                         "note": row.get("note", "")})
    return pd.DataFrame(rows, columns=[*labels, *CSV_COLUMNS]).astype({"n": "Int64"})


def _display(df: pd.DataFrame, spec: TableSpec) -> pd.DataFrame:
    from refine_iqa_lib.evaluation.statistics import format_interval

    out = df.copy()
    intervals = df.attrs.get("intervals", {})
    for c in spec.value_cols:
        d, pct = spec.decimals[c], c in spec.percent
        out[c] = [format_interval(v, *intervals.get(pos, {}).get(c, (None, None))[:2], decimals=d,
                                  suffix="%" if pct else "") for pos, v in enumerate(df[c])]
    for c in ("PD", "PM", "Num.", "Prob."):
        if c in out.columns:
            out[c] = out[c].map({True: "✓", False: "×"})
    return out.fillna("")


def write_table(df: pd.DataFrame, name: str, out_dir: str | Path = "results/tables") -> dict[str, Path]:
    """Write ``df`` (from :func:`build_table`) as ``<name>.csv``, ``.md`` and ``.tex``, atomically.

    The CSV keeps numbers, long (:func:`long_table`: ``value``, ``ci_low``, ``ci_high``, ``n``);
    Markdown and LaTeX show the paper's layout and precision, ``0.62 [0.55, 0.69]`` for our values
    with an interval, ``%`` for percentages, ✓/× for switches, and (LaTeX) the paper's column groups.
    """
    n = df.attrs.get("table")
    spec = _spec(int(n)) if n else None
    out_dir = Path(out_dir)
    caption = df.attrs.get("caption", name)
    paths = {"csv": write_text(out_dir / f"{name}.csv", long_table(df).to_csv(index=False))}
    shown = _display(df, spec) if spec else df.fillna("")
    markdown = shown.to_markdown(index=False, disable_numparse=True)
    paths["md"] = write_text(out_dir / f"{name}.md", f"**{caption}**\n\n{markdown}\n")
    tex = shown.copy()
    if spec:
        group_of = {c: g for g, cols in spec.groups.items() for c in cols}
        tex.columns = pd.MultiIndex.from_tuples([(group_of.get(c, ""), c) for c in tex.columns])
    latex = tex.to_latex(index=False, escape=True, caption=caption, label=f"tab:{name}",
                         multicolumn=True, multicolumn_format="c")
    paths["tex"] = write_text(out_dir / f"{name}.tex", latex)
    return paths


def write_all_tables(ours, profile: str, out_dir: str | Path = "results/tables",
                     runs: Mapping[str, str] | None = None,
                     predictions: str | Path | None = None) -> dict[int, dict[str, Path]]:
    """Build and write Tables 1-6 as ``table<n>_<profile>.{csv,md,tex}``."""
    long = _as_long(ours, profile)
    return {n: write_table(build_table(n, long, profile, runs, predictions=predictions), f"table{n}_{profile}", out_dir)
            for n in range(1, 7)}


def scale_notes(cfg: Config, n: int) -> str:
    """Why our rows of Table ``n`` differ from the paper's setting at this profile (data stand-ins,
    datasets not evaluated)."""
    notes = []
    if n in (1, 2) and cfg.perception.source == "embedded":
        notes.append("embedded synthetic perception test split (not Refine-Perception-20K)")
    if n in (3, 5, 6):
        wanted = list(T3_DATASETS.values()) if n == 3 else list(T56_DATASETS.values())
        embedded = [d for d in wanted if d in cfg.scoring.eval and str(cfg.scoring.roots.get(d, "")) == "embedded"]
        absent = [d for d in wanted if d not in cfg.scoring.eval]
        if embedded:
            notes.append(f"{', '.join(embedded)}: embedded synthetic stand-in (data.scoring_set), not the real set")
        if absent:
            notes.append(f"not evaluated at profile {cfg.profile!r} (not in scoring.eval): {', '.join(absent)}")
    if n in (4, 5, 6) and cfg.eval.qbench_root == "embedded":
        notes.append("interpreting = synthetic Q-Bench stand-in (data.qbench_set), not Q-Bench")
    if cfg.eval.max_samples:
        notes.append(f"at most {cfg.eval.max_samples} test items per set (eval.max_samples)")
    return "; ".join(notes)


def our_table(cfg: Config, n: int, write: bool = True):
    """Table ``n`` (1-6) of a configuration: :func:`build_table` from ``results/<profile>/`` beside the
    paper's rows, with :func:`scale_notes` added to our rows and the Advantage rows' paired intervals
    from ``<work_dir>/eval``; written to ``results/tables/table<n>_<profile>.{csv,md,tex}`` when
    ``write``. What notebooks 05-08 show."""
    df = build_table(n, cfg.results_dir, profile=cfg.profile, predictions=cfg.work_dir / "eval")
    extra = scale_notes(cfg, n)
    if extra:
        ours = df["source"] != "paper"
        df.loc[ours, "note"] = ["; ".join(filter(None, [str(v) if isinstance(v, str) else "", extra]))
                                for v in df.loc[ours, "note"]]
    if write:
        write_table(df, f"table{n}_{cfg.profile}", cfg.results_dir / "tables")
    return df
