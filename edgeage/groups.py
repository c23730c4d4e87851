"""Evaluation by group (``edgeage eval --by``) and by face size (``edgeage resolution-curve``).

Groups: ``race`` and ``gender`` (UTKFace file names, or a data set column of that name),
``decade`` (of the true age), ``face-size`` (the detector's box on the source image, recorded at
prepare time) and any extra column of a CSV data set. A value that cannot be told is the group
``unknown``. The gap is the MAE of the worst group minus that of the best, over the known groups.

The face-resolution curve down-samples every canonical crop (the face) to 12..64 px (area), then
brings it back as a CCTV pipeline would: bilinear up-sampling to the canonical crop size, then
the model's own preprocessing (``edgeage.preprocess``) to its input. Imports no torch."""
from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np

from .document import Heading, Para, Table, Title, blocks_md, page_html, plt_agg, savefig, write_html
from .metrics import cs, mae, range_metrics
from .utils import EdgeAgeError, atomic_path, output_dir, write_json

BUILTIN = ("race", "gender", "decade", "face-size")
UNKNOWN = "unknown"
RACES = ("white", "black", "asian", "indian", "others")   # UTKFace RACE field 0..4
GENDERS = ("male", "female")                               # UTKFace GENDER field 0..1
FACE_SIZE_EDGES = (16, 24, 32, 48, 64, 96, 128, 160, 192, 224, 256)  # px, max(w, h) of the face box
CURVE_SIZES = (12, 16, 24, 32, 48, 64)
GAP_MIN_N = 30  # the second gap: only groups this large (a group of 2 faces decides the first)
RANGE_COLUMNS = ("age_min", "age_max")  # a CSV's age given as a range of whole years


# ---- which group each face is in ------------------------------------------------------------

def parse_by(values) -> list[str]:
    """``--by`` values (repeatable, or comma lists) -> names, in order, without repeats."""
    out = []
    for v in values or ():
        for name in str(v).split(","):
            name = name.strip()
            if name and name not in out:
                out.append(name)
    return out


def allowed_groups(prep) -> list[str]:
    return list(BUILTIN) + [c for c in sorted(prep.groups or {}) if c not in BUILTIN]


def check_by(names: list[str], prep, data) -> None:
    """One EdgeAgeError naming --by and listing the allowed names, for any name not allowed."""
    allowed = allowed_groups(prep)
    bad = [n for n in names if n not in allowed]
    if bad:
        cols = [c for c in allowed if c not in BUILTIN]
        raise EdgeAgeError(f"--by {', '.join(bad)}: unknown group; allowed: {', '.join(BUILTIN)}"
                           + (f", or a column of {data}: {', '.join(cols)}" if cols else
                              f" ({data} has no extra CSV columns)"))


def utk_fields(name: str) -> tuple[str, str]:
    """(gender, race) of a UTKFace file name ``AGE_GENDER_RACE_DATE...``; ``unknown`` for a field
    that is missing (the three-field names lack RACE) or not a valid code."""
    f = os.path.basename(name).split("_")
    if len(f) not in (3, 4) or not f[0].isdigit():
        return UNKNOWN, UNKNOWN
    gender = GENDERS[int(f[1])] if f[1] in ("0", "1") else UNKNOWN
    race = RACES[int(f[2])] if len(f) == 4 and f[2] in ("0", "1", "2", "3", "4") else UNKNOWN
    return gender, race


def face_size_label(px: float) -> str:
    if not np.isfinite(px) or px <= 0:
        return UNKNOWN
    lo = 0
    for hi in FACE_SIZE_EDGES:
        if px < hi:
            return f"<{hi}" if lo == 0 else f"{lo}-{hi - 1}"
        lo = hi
    return f">={lo}"


def face_size_order() -> list[str]:
    return [face_size_label(e - 0.5) for e in FACE_SIZE_EDGES] + [face_size_label(FACE_SIZE_EDGES[-1])]


def decade_label(age: float) -> str:
    d = int(math.floor(age / 10))
    return f"{d * 10}-{d * 10 + 9}"


def face_px(prep) -> np.ndarray:
    """Side of the detector's face box (max of w, h) on the source image per crop, px; NaN where
    no face was found or the cache did not record boxes."""
    if prep.face_box is None:
        return np.full(len(prep.names), np.nan)
    b = np.asarray(prep.face_box, np.float64)
    return np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])


def labels(name: str, prep, idx) -> list[str]:
    """The group of each crop ``idx`` of ``prep`` for the group ``name``. A data set column of
    that name wins over what file names say (race, gender); decade and face-size are measured."""
    idx = np.asarray(idx, int)
    if name == "decade":
        return [decade_label(float(prep.ages[i])) for i in idx]
    if name == "face-size":
        px = face_px(prep)
        return [face_size_label(px[i]) for i in idx]
    if prep.groups and name in prep.groups:
        col = prep.groups[name]
        return [col[i].strip() or UNKNOWN for i in idx]
    if name in ("race", "gender"):
        k = 0 if name == "gender" else 1
        return [utk_fields(prep.names[i])[k] for i in idx]
    raise EdgeAgeError(f"--by {name}: unknown group")


def age_ranges(prep, idx, data) -> tuple[np.ndarray, np.ndarray] | None:
    """(lo, hi) of each crop ``idx`` where the data set's CSV gives the age as a range (columns
    ``age_min`` and ``age_max``, whole years, both ends in the range; an empty ``age_max`` is an
    open range such as 70+), for ``edgeage.metrics.range_metrics``; None without those columns."""
    if not prep.groups or not all(c in prep.groups for c in RANGE_COLUMNS):
        return None
    out = []
    for col in RANGE_COLUMNS:
        vals = []
        for i in np.asarray(idx, int):
            v = prep.groups[col][i].strip()
            if not v and col == "age_max":
                vals.append(math.inf)
                continue
            try:
                x = float(v)
            except ValueError:
                x = math.nan
            if not (0 <= x <= 120):
                raise EdgeAgeError(f"{data}: column {col} of {prep.names[i]} is {v!r}, not an age in years "
                                   "(0..120); age_min and age_max give an age range in whole years")
            vals.append(x)
        out.append(np.asarray(vals, np.float64))
    lo, hi = out
    bad = np.flatnonzero(hi < lo)
    if len(bad):
        i = int(np.asarray(idx, int)[bad[0]])
        raise EdgeAgeError(f"{data}: {prep.names[i]} has age_max {hi[bad[0]]:g} below age_min {lo[bad[0]]:g}")
    return lo, hi


def _order(name: str, keys: set[str]) -> list[str]:
    known = [k for k in keys if k != UNKNOWN]
    fixed = {"race": list(RACES), "gender": list(GENDERS), "face-size": face_size_order()}.get(name)
    if fixed is not None and all(k in fixed for k in known):
        known = [k for k in fixed if k in keys]
    elif name == "decade" or all(re.fullmatch(r"-?\d+(\.\d+)?(-\d+|\+)?", k) for k in known):  # 3-9, 70+
        known = sorted(known, key=lambda k: float(re.match(r"-?\d+(\.\d+)?", k).group()))
    else:
        known = sorted(known)
    return known + ([UNKNOWN] if UNKNOWN in keys else [])


def group_metrics(name: str, pred, true, labs: list[str], ranges=None) -> dict:
    """MAE, CS(5), n and mean true age per group (with ``ranges`` (lo, hi): the share in range and
    the distance to it too), and the gap (worst - best MAE) over the known groups (and over those
    of at least GAP_MIN_N faces)."""
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    labs = np.asarray(labs, dtype=object)
    groups = {}
    for g in _order(name, set(labs.tolist())):
        m = labs == g
        groups[g] = {"n": int(m.sum()), "mae": mae(pred[m], true[m]), "cs5": cs(pred[m], true[m], 5.0),
                     "mean_age": float(true[m].mean())}  # groups differ in age, and MAE grows with age
        if ranges is not None:
            groups[g].update(range_metrics(pred[m], ranges[0][m], ranges[1][m]))
    known = {g: v for g, v in groups.items() if g != UNKNOWN} or groups
    large = {g: v for g, v in known.items() if v["n"] >= GAP_MIN_N}
    return {"groups": groups, **_gap(known), "gap_over": list(known),
            "unknown": groups.get(UNKNOWN, {}).get("n", 0),
            "large_groups": {"min_n": GAP_MIN_N, **_gap(large), "gap_over": list(large)}}


def _gap(groups: dict) -> dict:
    if not groups:
        return {"gap": None, "worst": None, "best": None}
    worst = max(groups, key=lambda g: groups[g]["mae"])
    best = min(groups, key=lambda g: groups[g]["mae"])
    return {"gap": groups[worst]["mae"] - groups[best]["mae"], "worst": worst, "best": best}


def by_groups(names: list[str], prep, idx, pred, true, ranges=None) -> dict:
    return {n: group_metrics(n, pred, true, labels(n, prep, idx), ranges) for n in names}


# ---- the face-resolution curve ----------------------------------------------------------------

def at_face_px(crops: np.ndarray, px: int) -> np.ndarray:
    """Canonical crops [N,S,S,3] uint8 as a camera that saw the face at ``px`` pixels would give
    them: area down-sampling to px x px, then bilinear up-sampling back to S (the canonical crop's
    own resize), uint8."""
    import cv2

    from .preprocess import resize, to_uint8

    s = crops.shape[1]
    out = np.empty_like(crops)
    for i, c in enumerate(crops):
        small = cv2.resize(np.ascontiguousarray(c), (px, px), interpolation=cv2.INTER_AREA)
        out[i] = to_uint8(resize(small, s))
    return out


def resolution_curve(est, crops: np.ndarray, true, sizes=CURVE_SIZES) -> dict:
    """MAE, CS(5) of ``est`` on the crops at every face size, and on the crops as they are."""
    true = np.asarray(true, np.float64)
    full = est.ages(crops)
    points = []
    for px in sizes:
        pred = est.ages(at_face_px(crops, int(px)))
        points.append({"px": int(px), "n": int(len(true)), "mae": mae(pred, true), "cs5": cs(pred, true)})
    return {"points": points, "full": {"px": int(crops.shape[1]), "n": int(len(true)), "mae": mae(full, true),
                                       "cs5": cs(full, true)}}


# ---- reports ------------------------------------------------------------------------------------

def group_sections(res: dict) -> list[dict]:
    """Table sections (title, lines, headers, rows) of an eval result: overall, decades, groups."""
    secs = [{"title": "Overall", "lines": [f"model {res.get('model')}, data {res.get('data')}, split "
                                           f"{res.get('split')}; faces not found {res.get('faces_not_found', 0)}"],
             "headers": ["n", "MAE", "CS(5)"], "rows": [[res["n"], f"{res['mae']:.3f}", f"{res['cs5']:.3f}"]]}]
    if res.get("age_range"):
        r = res["age_range"]
        secs[0]["lines"].append(f"ages labelled as ranges (age_min..age_max): {100 * r['in_range']:.1f} % of the "
                                f"predictions in range, {r['mae_to_range']:.2f} years from it on average; the "
                                "MAE is against the `age` column")
    for name, g in (res.get("groups") or {}).items():
        lines = [f"gap (worst - best MAE, known groups): {g['gap']:.2f} years ({g['worst']} - {g['best']})"]
        big = g.get("large_groups") or {}
        if big.get("worst") is not None and big["gap_over"] != g["gap_over"]:
            lines.append(f"gap over groups of n >= {big['min_n']}: {big['gap']:.2f} years "
                         f"({big['worst']} - {big['best']})")
        if g.get("unknown"):
            lines.append(f"{g['unknown']} face(s) in the group '{UNKNOWN}' (not in the gap)")
        ranged = all("in_range" in v for v in g["groups"].values())
        secs.append({"title": f"By {name}", "lines": lines,
                     "headers": [name, "n", "MAE", "CS(5)", "mean age"] + (["in range", "to range"] if ranged else []),
                     "rows": [[k, v["n"], f"{v['mae']:.2f}", f"{v['cs5']:.3f}", f"{v['mean_age']:.1f}"]
                              + ([f"{100 * v['in_range']:.1f} %", f"{v['mae_to_range']:.2f}"] if ranged else [])
                              for k, v in g["groups"].items()]})
    if not res.get("groups"):
        secs.append({"title": "By age decade", "lines": [], "headers": ["ages", "n", "MAE"],
                     "rows": [[k, v["n"], f"{v['mae']:.2f}"] for k, v in res["per_decade"].items()]})
    return secs


def _blocks(title: str, sections: list[dict]) -> list:
    """``edgeage.document`` blocks of table sections (title, lines, headers, rows)."""
    out = [Title(title)]
    for sec in sections:
        out += [Heading(sec["title"])] + ([Para(sec["lines"])] if sec["lines"] else []) + \
            [Table(sec["headers"], sec["rows"])]
    return out


def group_markdown(res: dict) -> list[str]:
    return ["", blocks_md(_blocks("", group_sections(res)[1:])[1:])]


def plot_groups(path, groups: dict) -> None:
    """One bar chart of MAE per group (n above each bar) per --by name, side by side."""
    plt = plt_agg()
    k = len(groups)
    widths = [max(2.5, 0.55 * len(g["groups"]) + 1.2) for g in groups.values()]
    fig, axes = plt.subplots(1, k, figsize=(sum(widths), 4.2), squeeze=False,
                             gridspec_kw={"width_ratios": widths})
    for ax, (name, g) in zip(axes[0], groups.items()):
        keys = list(g["groups"])
        vals = [g["groups"][x]["mae"] for x in keys]
        bars = ax.bar(range(len(keys)), vals, color=["#bbb" if x == UNKNOWN else "#4c72b0" for x in keys])
        for b, x in zip(bars, keys):
            ax.annotate(f"n={g['groups'][x]['n']}", (b.get_x() + b.get_width() / 2, b.get_height()),
                        ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(keys)), keys, rotation=45, ha="right", fontsize=8)
        ax.set_title(f"{name}: gap {g['gap']:.2f}", fontsize=10)
        ax.set_ylim(0, max(vals + [1.0]) * 1.15)
    axes[0][0].set_ylabel("MAE (years)")
    fig.tight_layout()
    savefig(fig, path)


def write_group_html(out: Path, res: dict, images: list[Path]) -> None:
    write_html(out / "eval.html", page_html(_blocks("Evaluation", group_sections(res)), images=images))


def curve_rows(res: dict) -> tuple[list[str], list[list]]:
    models = res["models"]
    headers = ["face px"] + [m["name"] for m in models]
    rows = [[p] + [f"{next(q for q in m['points'] if q['px'] == p)['mae']:.2f}" for m in models]
            for p in res["sizes"]]
    rows.append([f"as prepared ({res['crop_size']} px crop)"] + [f"{m['full']['mae']:.2f}" for m in models])
    return headers, rows


def write_curve_report(out_dir, res: dict, force: bool = False) -> Path:
    """curve.json, curve.md, curve.html and curve.png (MAE vs face px, one line per model)."""
    out = output_dir(out_dir, force)
    write_json(out / "curve.json", res)
    plot_curve(out / "curve.png", res)
    headers, rows = curve_rows(res)
    note = (f"data {res['data']}, split {res['split']}, n = {res['n']}. Each canonical crop (the face) is "
            "down-sampled to the size (area), up-sampled back to the canonical crop (bilinear), then "
            "given to the model through its own preprocessing.")
    sec = {"title": "MAE (years) vs face size (px)", "lines": [note], "headers": headers, "rows": rows}
    cs5 = {"title": "CS(5)", "lines": [], "headers": headers, "rows": [
        [p] + [f"{next(q for q in m['points'] if q['px'] == p)['cs5']:.3f}" for m in res["models"]]
        for p in res["sizes"]]}
    blocks = _blocks("Face-resolution curve: MAE (years) vs face size", [sec, cs5])
    with atomic_path(out / "curve.md") as tmp:
        tmp.write_text(blocks_md(blocks) + "\n\n![MAE vs face size](curve.png)\n")
    write_html(out / "curve.html", page_html(blocks, images=[out / "curve.png"]))
    return out


def plot_curve(path, res: dict) -> None:
    plt = plt_agg()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for i, m in enumerate(res["models"]):
        line, = ax.plot([p["px"] for p in m["points"]], [p["mae"] for p in m["points"]], "o-",
                        label=f"{m['name']} ({m['input_size']} px input)")
        ax.axhline(m["full"]["mae"], color=line.get_color(), ls=":", lw=1)
    ax.set_xscale("log", base=2)
    ax.set_xticks(res["sizes"], [str(s) for s in res["sizes"]])
    ax.set_xlabel("face size in the source (px)")
    ax.set_ylabel("MAE (years)")
    ax.set_title(f"MAE vs face size, {res['split']} split (n={res['n']}); dotted: crops as prepared", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    savefig(fig, path)
