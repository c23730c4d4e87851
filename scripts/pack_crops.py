"""Pack a prepared crop cache small enough to travel to a GPU machine, and unpack it there.

    python scripts/pack_crops.py pack   --prepared .cache/utk-prepared --out .gpu/utk [--codec jpg]
    python scripts/pack_crops.py unpack --src .gpu/utk --out .cache/utk-prepared

``pack`` encodes the training and validation crops (WebP at quality 90 by default: 29 MiB for
UTKFace's 16,043 train + val crops at 96 px, mean absolute error 1.75 of 255; JPEG at 92 took
49 MiB, too much beside the repository inside the device tool's 64 MiB) and leaves the
test split's crops out entirely (they are written back as black images, so the test split can
never be evaluated, or leak, on the packed copy). File names, ages and the split are kept, so
``edgeage train`` on the unpacked cache trains on exactly the same split as on the original."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np


def pack(prepared: Path, out: Path, quality: int, seed: int, val: float, test: float, codec: str = "webp") -> None:
    import cv2

    from edgeage.data import load_prepared, split

    prep = load_prepared(prepared)
    parts = split(prep.names, seed=seed, val=val, test=test)
    keep = np.zeros(len(prep.names), bool)
    keep[parts["train"]] = keep[parts["val"]] = True
    blobs, offsets = [], [0]
    for i, c in enumerate(prep.crops):
        b = b""
        if keep[i]:  # crops are RGB; OpenCV encodes BGR
            flag = cv2.IMWRITE_WEBP_QUALITY if codec == "webp" else cv2.IMWRITE_JPEG_QUALITY
            ok, enc = cv2.imencode(f".{codec}", np.ascontiguousarray(c[..., ::-1]), [flag, quality])
            if not ok:
                sys.exit(f"could not {codec}-encode crop {i} ({prep.names[i]})")
            b = enc.tobytes()
        blobs.append(b)
        offsets.append(offsets[-1] + len(b))
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "blobs.npy", np.frombuffer(b"".join(blobs), np.uint8))
    np.save(out / "offsets.npy", np.asarray(offsets, np.int64))
    meta = json.loads((prepared / "meta.json").read_text())
    meta["packed"] = {"codec": codec, "quality": quality, "test_left_out": int((~keep).sum()),
                      "shape": list(prep.crops.shape[1:])}
    (out / "meta.json").write_text(json.dumps(meta))
    mb = sum(f.stat().st_size for f in out.iterdir()) / 2**20
    print(f"packed {keep.sum()} crops (test split left out: {(~keep).sum()}) into {out}: {mb:.1f} MiB")


def unpack(src: Path, out: Path) -> None:
    import cv2

    meta = json.loads((src / "meta.json").read_text())
    blob, off = np.load(src / "blobs.npy"), np.load(src / "offsets.npy")
    crops = np.zeros([len(off) - 1] + meta["packed"]["shape"], np.uint8)
    for i in range(len(crops)):
        if off[i + 1] > off[i]:
            crops[i] = cv2.imdecode(blob[off[i]:off[i + 1]], cv2.IMREAD_COLOR)[..., ::-1]
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "crops.npy.tmp"
    with open(tmp, "wb") as f:
        np.save(f, crops)
    os.replace(tmp, out / "crops.npy")
    (out / "meta.json").write_text(json.dumps(meta))
    print(f"unpacked {len(crops)} crops into {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--prepared", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--quality", type=int, default=90)
    p.add_argument("--codec", choices=["webp", "jpg"], default="webp")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val", type=float, default=0.1)
    p.add_argument("--test", type=float, default=0.15)
    u = sub.add_parser("unpack")
    u.add_argument("--src", type=Path, required=True)
    u.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    if a.cmd == "pack":
        pack(a.prepared, a.out, a.quality, a.seed, a.val, a.test, a.codec)
    else:
        unpack(a.src, a.out)


if __name__ == "__main__":
    main()
