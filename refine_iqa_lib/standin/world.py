"""The stand-in's world: the photographs and named object cut-outs that everything embedded grows out of.

The paper's data are COCO scenes (Stage-1), KonIQ / SPAQ photographs with human MOS (Stage-2) and
Q-Bench questions; none of them can be installed. The embedded scale builds its analogues from
real pictures that ship inside software packages (no hub, no network at run time):

* **Photographs** (backgrounds, scoring crops, pre-training pictures): 36 photographs from three
  Debian wallpaper packages (``lomiri-wallpapers-16.04``, ``mate-backgrounds``,
  ``plasma-workspace-wallpapers``; renders and abstract images left out) plus the 8 colour
  photographs that scikit-image and scikit-learn install (read from those packages).
* **Named objects** (the scenes' objects, their names and boxes): photographic cut-outs with an
  alpha mask from Debian's ``tuxpaint-stamps-default`` (drawings left out), each given a
  basic-level name (``stamp_names.csv``: a heron and a crane stay apart, five apples are all
  "apple"), so that most names have several instances.

Committed, not fetched
----------------------
The Debian pictures are committed as derived files (``assets/pictures/``): each photograph resized
to :data:`PHOTO_SIDE` pixels on its longer side (Lanczos, PNG), each cut-out to at most
:data:`OBJECT_SIDE` (RGBA PNG). Why not a fetch step with checksums: Debian's mirrors keep only
the current version of a package, so a checksum pinned today stops matching at the next upload,
and ``make reproduce`` / ``make test`` must work offline and off Debian. :func:`build_assets`
regenerates the folder from the four ``.deb`` files (pure Python: ``ar`` + ``tar.xz``), checking
each package's SHA-256 against :data:`DEBIAN_PACKAGES`; ``assets/pictures/ATTRIBUTION.md`` lists
every picture's origin, author and licence.

Splits (by photograph, by object instance)
------------------------------------------
:func:`assign_splits` is the one rule, applied when the catalogue is written and re-checked by a
test: photographs are split **by photograph** (a stereo pair counts as one) into ``train`` /
``validation`` / ``test`` per source package, :data:`PHOTO_SPLIT` of each package's photographs to
each held-out split, chosen by a seeded permutation. Cut-outs are split **by instance within a
name**: a name with three or more instances gives one to ``validation`` and one to ``test``, a name
with two gives one to ``test``, the rest train; a name with one instance trains only. So every
held-out object is an instance never seen in training whose *name* is seen in training ("held-out
instances of seen names"), shown on backgrounds of held-out photographs: a held-out scene shares
no picture, cut-out or pristine pixel with training.

Catalogue (``assets/pictures/catalogue.csv``)
---------------------------------------------
One row per picture: ``id``, ``kind`` (photo | object), ``name`` (object name; photo title),
``split``, ``group`` (photos of one scene), ``file`` (under ``assets/pictures/``; empty for
photographs read from an installed package), ``width``, ``height``, ``pixels_sha256`` (SHA-256 of
the decoded pixels, what the content audits compare), ``package``, ``version``, ``original``
(path inside the package), ``original_sha256`` (of the original file), ``author``, ``licence``,
``label`` (Tux Paint's English description).
"""
from __future__ import annotations

import argparse
import fnmatch
import hashlib
import importlib.util
import io
import json
import logging
import re
import tarfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from refine_iqa_lib.io import atomic_dir, write_text

__all__ = ["ASSETS", "PICTURES", "CATALOGUE", "DEBIAN_PACKAGES", "PACKAGE_PHOTOS", "PHOTO_SIDE", "OBJECT_SIDE",
           "SPLITS", "catalogue", "catalogue_digest", "photo_ids", "object_ids", "load_photo", "load_object", "object_name",
           "pixels_sha256", "assign_splits", "build_assets", "world_facts"]

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent / "assets"
PICTURES = ASSETS / "pictures"
CATALOGUE = PICTURES / "catalogue.csv"
STAMP_NAMES = ASSETS / "stamp_names.csv"
SPLITS = ("train", "validation", "test")

#: Longer side of a committed photograph and largest side of a committed cut-out (px).
PHOTO_SIDE, OBJECT_SIDE = 512, 160
#: Per source package, the share of its photographs given to each held-out split (at least one each).
PHOTO_SPLIT = {"validation": 0.15, "test": 0.2}
_SPLIT_SEED = 20261207

#: The Debian packages the committed pictures come from: name -> (version, SHA-256 of the .deb).
DEBIAN_PACKAGES = {
    "lomiri-wallpapers-16.04": ("20.04.0-2", "a99ff6a3bfe451e4cc0682ecb3cc82e71740626d59e4845ae34a0a0e45421eab"),
    "mate-backgrounds": ("1.26.0-1", "7bf4c2209f34b4f61ba6d24c8b58c28b361e82e4b943aae6d42c030169af9e04"),
    "plasma-workspace-wallpapers": ("4:5.27.5-2", "32cd18b71c8c938a18b3b351f217c02ac590e323caa3cf322fbb875ce8892f8b"),
    "tuxpaint-stamps-default": ("2022.06.04-1", "6db6c1bfc870a47f1499d6203b083522eacb57c5f9c87d468f2e92eb6d9d5f34"),
}

#: The photographs of the wallpaper packages (renders, drawings and abstract images are not listed).
DEBIAN_PHOTOS = {
    "lomiri-wallpapers-16.04": [f"usr/share/backgrounds/{n}.jpg" for n in (
        "Bridge_by_Sander_Klootwijk", "Dragonfly_by_Bolly", "Picture_0B_by_freespace", "Picture_1A_by_freespace",
        "Wine_by_Jakkub_Mede", "aitzgorri_by_Aitzol_Berasategi", "free_by_Peter_Nerlich",
        "friends_by_Aitzol_Berasategi", "greentock_by_Peter_Nerlich", "life_by_Aitzol_Berasategi",
        "picosdeeuropa_by_Aitzol_Berasategi", "seeding_by_Clements_Engelhardt", "sunset_by_Aitzol_Berasategi")],
    "mate-backgrounds": [f"usr/share/backgrounds/mate/nature/{n}.jpg" for n in (
        "Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird", "RainDrops", "Storm",
        "TwoWings", "Wood", "YellowFlower")],
    "plasma-workspace-wallpapers": [f"usr/share/wallpapers/{n}/contents/images/2560x1600.jpg" for n in (
        "BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf", "Grey", "Kite",
        "OneStandsOut", "Path", "summer_1am")],
}
#: Photographs read from installed Python packages: id -> (package, path in its data folder, licence, group).
PACKAGE_PHOTOS = {
    "astronaut": ("scikit-image", "data/astronaut.png", "public domain (NASA)", "astronaut"),
    "chelsea": ("scikit-image", "data/chelsea.png", "CC0", "chelsea"),
    "coffee": ("scikit-image", "data/coffee.png", "CC0", "coffee"),
    "rocket": ("scikit-image", "data/rocket.jpg", "public domain (NASA)", "rocket"),
    "motorcycle_left": ("scikit-image", "data/motorcycle_left.png", "Middlebury stereo data set", "motorcycle"),
    "motorcycle_right": ("scikit-image", "data/motorcycle_right.png", "Middlebury stereo data set", "motorcycle"),
    "china": ("scikit-learn", "datasets/images/china.jpg", "CC BY 2.0", "china"),
    "flower": ("scikit-learn", "datasets/images/flower.jpg", "CC BY 2.0", "flower"),
}
_MODULE = {"scikit-image": "skimage", "scikit-learn": "sklearn"}
_STAMP_ROOT = "usr/share/tuxpaint/stamps/"


# --------------------------------------------------------------------------- reading
def pixels_sha256(arr: np.ndarray) -> str:
    """SHA-256 of an array's shape, dtype and bytes: what "the same pixels" means here.

    >>> pixels_sha256(np.zeros((2, 2, 3), np.uint8)) == pixels_sha256(np.zeros((2, 2, 3), np.uint8))
    True
    """
    a = np.ascontiguousarray(arr)
    h = hashlib.sha256(f"{a.shape}|{a.dtype.str}|".encode())
    h.update(a.tobytes())
    return h.hexdigest()


@lru_cache(maxsize=1)
def catalogue() -> pd.DataFrame:
    """The committed catalogue (see the module docstring), one row per picture, indexed by ``id``."""
    if not CATALOGUE.is_file():
        raise FileNotFoundError(f"{CATALOGUE}: the embedded pictures' catalogue is missing; expected the committed "
                                "file (regenerate with `python -m refine_iqa_lib.standin.world --debs DIR`)")
    df = pd.read_csv(CATALOGUE, dtype=str, keep_default_na=False)
    for col in ("width", "height"):
        df[col] = df[col].astype(int)
    return df.set_index("id", drop=False)


def catalogue_digest() -> str:
    """A short SHA-256 of the committed catalogue (ids, splits and pixel hashes of every picture):
    what a build's fingerprint holds so that a changed world invalidates what was built from it."""
    return hashlib.sha256(CATALOGUE.read_bytes()).hexdigest()[:16]


def _ids(kind: str, split: str | None) -> list[str]:
    if split is not None and split not in SPLITS:
        raise ValueError(f"split {split!r}: expected one of {SPLITS}")
    df = catalogue()
    df = df[df["kind"] == kind]
    if split is not None:
        df = df[df["split"] == split]
    return sorted(df["id"])


def photo_ids(split: str | None = None) -> list[str]:
    """Ids of the photographs (of one split, or all), sorted."""
    return _ids("photo", split)


def object_ids(split: str | None = None) -> list[str]:
    """Ids of the object cut-outs (of one split, or all), sorted."""
    return _ids("object", split)


def _package_file(package: str, rel: str) -> Path:
    spec = importlib.util.find_spec(_MODULE[package])
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed; it ships the photograph {rel}")
    return Path(list(spec.submodule_search_locations)[0]) / rel


def _entry(pid: str, kind: str) -> pd.Series:
    df = catalogue()
    if pid not in df.index or df.at[pid, "kind"] != kind:
        valid = photo_ids() if kind == "photo" else object_ids()
        raise KeyError(f"unknown embedded {kind} {pid!r}; {len(valid)} exist (e.g. {valid[:3]})")
    return df.loc[pid]


@lru_cache(maxsize=64)
def _load_photo(pid: str) -> np.ndarray:
    from refine_iqa_lib.io import open_image

    row = _entry(pid, "photo")
    path = PICTURES / row["file"] if row["file"] else _package_file(row["package"], row["original"])
    arr = np.asarray(open_image(path).convert("RGB"), dtype=np.uint8)
    arr.setflags(write=False)
    return arr


def load_photo(pid: str) -> np.ndarray:
    """A photograph as ``H x W x 3`` uint8 RGB (a fresh, writable copy)."""
    return _load_photo(pid).copy()


@lru_cache(maxsize=512)
def _load_object(oid: str) -> tuple[np.ndarray, np.ndarray]:
    row = _entry(oid, "object")
    with Image.open(PICTURES / row["file"]) as im:  # a committed RGBA file: its alpha is the object's mask
        rgba = np.asarray(im.convert("RGBA"), dtype=np.uint8)
    rgb, alpha = np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3])
    rgb.setflags(write=False)
    alpha.setflags(write=False)
    return rgb, alpha


def load_object(oid: str) -> tuple[np.ndarray, np.ndarray]:
    """A cut-out as ``(rgb H x W x 3 uint8, alpha H x W uint8)`` (fresh copies)."""
    rgb, alpha = _load_object(oid)
    return rgb.copy(), alpha.copy()


def object_name(oid: str) -> str:
    """The basic-level name of a cut-out (``"apple"``)."""
    return str(_entry(oid, "object")["name"])


def world_facts() -> dict:
    """Counts per kind, source and split, and object names per split (for the data card)."""
    df = catalogue()
    out: dict = {}
    for kind in ("photo", "object"):
        sub = df[df["kind"] == kind]
        out[kind] = {"n": int(len(sub)),
                     "by_split": {s: int((sub["split"] == s).sum()) for s in SPLITS},
                     "by_package": {p: {s: int(((sub["package"] == p) & (sub["split"] == s)).sum()) for s in SPLITS}
                                    for p in sorted(sub["package"].unique())}}
    obj = df[df["kind"] == "object"]
    train_names = set(obj.loc[obj["split"] == "train", "name"])
    out["object_names"] = {s: int(obj.loc[obj["split"] == s, "name"].nunique()) for s in SPLITS}
    out["heldout_names_seen_in_training"] = {
        s: f"{len(set(obj.loc[obj['split'] == s, 'name']) & train_names)} of "
           f"{obj.loc[obj['split'] == s, 'name'].nunique()}" for s in ("validation", "test")}
    return out


# --------------------------------------------------------------------------- splits
def assign_splits(photos: pd.DataFrame, objects: pd.DataFrame, seed: int = _SPLIT_SEED) -> dict[str, str]:
    """The split of every picture id (see the module docstring). ``photos`` needs ``id``,
    ``package``, ``group``; ``objects`` needs ``id``, ``name``. Deterministic by ``seed``.

    >>> ph = pd.DataFrame({"id": list("abcdefghij"), "package": ["p"] * 10, "group": list("abcdefghij")})
    >>> ob = pd.DataFrame({"id": ["o1", "o2", "o3", "o4", "o5", "o6"], "name": ["x", "x", "x", "y", "y", "z"]})
    >>> s = assign_splits(ph, ob)
    >>> sorted(s[i] for i in "abcdefghij").count("train"), [s[o] for o in ("o6",)]
    (6, ['train'])
    >>> sorted(s[o] for o in ("o1", "o2", "o3")), sorted(s[o] for o in ("o4", "o5"))
    (['test', 'train', 'validation'], ['test', 'train'])
    """
    out: dict[str, str] = {}
    for k, (package, sub) in enumerate(sorted(photos.groupby("package"), key=lambda t: t[0])):
        groups = sorted(sub["group"].unique())
        order = [groups[i] for i in np.random.default_rng([seed, 0x9A, k]).permutation(len(groups))]
        n_test = max(1, int(round(PHOTO_SPLIT["test"] * len(groups))))
        n_val = max(1, int(round(PHOTO_SPLIT["validation"] * len(groups)))) if len(groups) > 2 else 0
        split_of = {g: ("test" if i < n_test else "validation" if i < n_test + n_val else "train")
                    for i, g in enumerate(order)}
        out.update({r["id"]: split_of[r["group"]] for _, r in sub.iterrows()})
    for k, (name, sub) in enumerate(sorted(objects.groupby("name"), key=lambda t: t[0])):
        ids = sorted(sub["id"])
        order = [ids[i] for i in np.random.default_rng([seed, 0x0B, k]).permutation(len(ids))]
        held = ["validation", "test"] if len(ids) >= 3 else ["test"] if len(ids) == 2 else []
        for i, oid in enumerate(order):
            out[oid] = held[i] if i < len(held) else "train"
    return out


# --------------------------------------------------------------------------- regeneration
def _ar_members(blob: bytes) -> dict[str, bytes]:
    """The members of an ``ar`` archive (a ``.deb``)."""
    if not blob.startswith(b"!<arch>\n"):
        raise ValueError("not an ar archive (expected a .deb file)")
    pos, out = 8, {}
    while pos + 60 <= len(blob):
        header = blob[pos:pos + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        out[name] = blob[pos + 60:pos + 60 + size]
        pos += 60 + size + (size % 2)
    return out


def _deb_files(path: Path, wanted) -> dict[str, bytes]:
    """Files of a ``.deb``'s data archive whose path (no leading ``./``) passes ``wanted``."""
    members = _ar_members(path.read_bytes())
    data = next((v for k, v in members.items() if k.startswith("data.tar")), None)
    if data is None:
        raise ValueError(f"{path}: no data.tar.* member")
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        for m in tar.getmembers():
            name = m.name.removeprefix("./")
            if m.isfile() and wanted(name):
                out[name] = tar.extractfile(m).read()
    return out


def _dep5(text: str) -> list[tuple[list[str], str, str]]:
    """(patterns, copyright, licence) stanzas of a machine-readable Debian copyright file."""
    out = []
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in block.splitlines():
            if line[:1].isspace() and key:
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
        if "Files" in fields:
            out.append((fields["Files"].split(), fields.get("Copyright", ""), fields.get("License", "").split(" ")[0]))
    return out


def _credit(stanzas, rel: str) -> tuple[str, str]:
    hit = ("", "")
    for patterns, holder, licence in stanzas:  # the last matching stanza wins (DEP-5)
        if any(fnmatch.fnmatch(rel, p) for p in patterns):
            hit = (holder, licence)
    return hit


def _fit(im: Image.Image, side: int) -> Image.Image:
    w, h = im.size
    if max(w, h) <= side:
        return im
    f = side / max(w, h)
    return im.resize((max(1, round(w * f)), max(1, round(h * f))), Image.LANCZOS)


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def build_assets(debs: str | Path, out: str | Path = PICTURES) -> Path:
    """Regenerate ``assets/pictures/`` (pictures, ``catalogue.csv``, ``ATTRIBUTION.md``) from the
    four ``.deb`` files of :data:`DEBIAN_PACKAGES` in ``debs`` (``apt-get download NAME`` fetches
    them). Each ``.deb``'s SHA-256 must match; a different version stops with the package named."""
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # 16 MP wallpapers of the checked packages only
    try:
        return _build_assets(Path(debs), Path(out))
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _build_assets(debs: Path, out: Path) -> Path:
    rows: list[dict] = []
    files: dict[str, bytes] = {}
    stamp_names = pd.read_csv(STAMP_NAMES, dtype=str)
    for package, (version, sha) in DEBIAN_PACKAGES.items():
        found = sorted(debs.glob(f"{package}_*.deb"))
        if not found:
            raise FileNotFoundError(f"{debs}: no {package}_*.deb (expected version {version}; "
                                    f"`apt-get download {package}`)")
        blob = found[0].read_bytes()
        got = hashlib.sha256(blob).hexdigest()
        if got != sha:
            raise ValueError(f"{found[0]}: SHA-256 {got}; expected {sha} ({package} {version}). The committed "
                             "pictures come from that version; update DEBIAN_PACKAGES only together with them")
        if package == "tuxpaint-stamps-default":
            wanted = {_STAMP_ROOT + s for s in stamp_names["stamp"]}
        else:
            wanted = set(DEBIAN_PHOTOS[package])
        doc = next(iter(_deb_files(found[0], lambda n: n == f"usr/share/doc/{package}/copyright").values()), b"")
        stanzas = _dep5(doc.decode("utf-8", "replace"))
        extra = (lambda n: n.endswith("/metadata.json") or n.endswith(".txt")) if package != "lomiri-wallpapers-16.04" \
            else (lambda n: False)
        content = _deb_files(found[0], lambda n: n in wanted or extra(n))
        missing = sorted(wanted - set(content))
        if missing:
            raise ValueError(f"{found[0]}: missing {missing[:5]}")
        if package == "tuxpaint-stamps-default":
            for _, r in stamp_names.iterrows():
                rel = _STAMP_ROOT + r["stamp"]
                raw = content[rel]
                im = _fit(Image.open(io.BytesIO(raw)).convert("RGBA"), OBJECT_SIDE)
                oid = "obj_" + re.sub(r"[^a-z0-9]+", "_", r["stamp"].removesuffix(".png").lower()).strip("_")
                label = content.get(rel[:-4] + ".txt", b"").decode("utf-8", "replace").splitlines()[:1]
                holder, licence = _credit(stanzas, r["stamp"])
                rel_out = f"objects/{oid}.png"
                files[rel_out] = _png(im)
                rows.append({"id": oid, "kind": "object", "name": r["name"], "group": oid, "file": rel_out,
                             "width": im.size[0], "height": im.size[1], "package": package, "version": version,
                             "original": rel, "original_sha256": hashlib.sha256(raw).hexdigest(),
                             "author": holder, "licence": licence, "label": label[0].strip() if label else ""})
        else:
            for rel in DEBIAN_PHOTOS[package]:
                raw = content[rel]
                im = _fit(Image.open(io.BytesIO(raw)).convert("RGB"), PHOTO_SIDE)
                if package == "plasma-workspace-wallpapers":
                    title = rel.split("/")[3]
                    meta = json.loads(content[f"usr/share/wallpapers/{title}/metadata.json"]).get("KPlugin", {})
                    holder = ", ".join(a.get("Name", "") for a in meta.get("Authors", []))
                    licence = meta.get("License", "") or _credit(stanzas, rel)[1]
                else:
                    title = Path(rel).stem
                    tail = rel.split("backgrounds/", 1)[1]
                    holder, licence = _credit(stanzas, tail.removeprefix("mate/"))
                    if not holder:
                        holder, licence = _credit(stanzas, "16.04/" + tail)
                pid = "photo_" + re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_").removesuffix("_jpg")
                pid = re.sub(r"_by_.*$", "", pid)
                rel_out = f"photos/{pid}.png"
                files[rel_out] = _png(im)
                rows.append({"id": pid, "kind": "photo", "name": title, "group": pid, "file": rel_out,
                             "width": im.size[0], "height": im.size[1], "package": package, "version": version,
                             "original": rel, "original_sha256": hashlib.sha256(raw).hexdigest(),
                             "author": holder, "licence": licence, "label": ""})
    for pid, (package, rel, licence, group) in PACKAGE_PHOTOS.items():
        from importlib.metadata import version as _version

        path = _package_file(package, rel)
        im = Image.open(path)
        rows.append({"id": pid, "kind": "photo", "name": pid, "group": group, "file": "", "width": im.size[0],
                     "height": im.size[1], "package": package, "version": _version(package), "original": rel,
                     "original_sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "author": "",
                     "licence": licence, "label": ""})
    df = pd.DataFrame(rows)
    split = assign_splits(df[df["kind"] == "photo"], df[df["kind"] == "object"])
    df["split"] = df["id"].map(split)
    with atomic_dir(out) as tmp:
        for rel, blob in files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_bytes(blob)
        sums = []
        for _, r in df.iterrows():
            if r["file"]:
                im = Image.open(tmp / r["file"])
                arr = np.asarray(im.convert("RGBA" if r["kind"] == "object" else "RGB"))
            else:
                arr = np.asarray(Image.open(_package_file(r["package"], r["original"])).convert("RGB"))
            sums.append(pixels_sha256(arr))
        df["pixels_sha256"] = sums
        cols = ["id", "kind", "name", "split", "group", "file", "width", "height", "pixels_sha256", "package",
                "version", "original", "original_sha256", "author", "licence", "label"]
        df = df[cols].sort_values(["kind", "id"]).reset_index(drop=True)
        df.to_csv(tmp / "catalogue.csv", index=False, lineterminator="\n")
        write_text(tmp / "ATTRIBUTION.md", _attribution(df))
    catalogue.cache_clear()
    log.info("[world] %d photographs and %d cut-outs written to %s", int((df["kind"] == "photo").sum()),
             int((df["kind"] == "object").sum()), out)
    return out


def _attribution(df: pd.DataFrame) -> str:
    lines = ["# Pictures of the embedded scale: origins and licences", "",
             "Every picture the stand-in's world is built from. Photographs were resized to "
             f"{PHOTO_SIDE} px on the longer side and cut-outs to at most {OBJECT_SIDE} px (Lanczos, PNG); "
             "nothing else was changed. The Debian packages are the source form of these derived files:",
             ""]
    for package, (version, sha) in DEBIAN_PACKAGES.items():
        lines.append(f"- `{package}` {version} (Debian 12; .deb SHA-256 `{sha}`)")
    lines += ["- scikit-image and scikit-learn photographs are not copied: they are read from the installed "
              "packages.", "", "| id | kind | name | split | package | original | author | licence |",
              "|---|---|---|---|---|---|---|---|"]
    for _, r in df.iterrows():
        author = str(r["author"]).replace("|", "/")
        lines.append(f"| {r['id']} | {r['kind']} | {r['name']} | {r['split']} | {r['package']} {r['version']} | "
                     f"`{r['original']}` | {author} | {r['licence']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m refine_iqa_lib.standin.world",
                                     description="Regenerate the embedded pictures from the Debian packages")
    parser.add_argument("--debs", required=True, help="folder holding the four .deb files (apt-get download NAME)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    build_assets(args.debs)
    for k, v in world_facts().items():
        log.info("%s: %s", k, v)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
