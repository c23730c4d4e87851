"""A warm start for the dual-view ``mivolo`` from a trained ``mivolo-face`` checkpoint: every shared
weight copied, the context view's patch embedding and outlookers (``context``, ``context_merge``)
started as copies of the face view's, the feature enhancer fresh and the merge [I | 0] (so the
new model starts exactly as the face model on the face view).

    python scripts/mivolo_dual_init.py FACE_CKPT OUT.pt

Then train with ``[train] init = "OUT.pt"`` (train/recipes/families-cpu/mivolo.toml)."""
from __future__ import annotations

import sys

import torch


def main(face_ckpt: str, out: str) -> int:
    from edgeage.checkpoint import build_manifest, load_model, save_checkpoint
    from edgeage.models import create

    face, manifest = load_model(face_ckpt)
    cfg = {k: manifest.model.config()[k] for k in ("dims", "heads", "depths", "mlp_ratio", "head", "age_min", "age_max",
                                             "dropout")}
    if manifest.model.name != "mivolo-face":
        raise SystemExit(f"{face_ckpt}: a mivolo-face checkpoint is needed, not {manifest.model.name}")
    dual = create("mivolo", **cfg)
    state = dual.state_dict()
    src = face.state_dict()
    for k in state:
        if k in src:
            state[k] = src[k].clone()
        for new, old in (("backbone.context.", "backbone.face."), ("backbone.context_merge.", "backbone.face_merge.")):
            if k.startswith(new):
                state[k] = src[old + k[len(new):]].clone()
    dual.load_state_dict(state)
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():  # the start is the face model on the face view
        dual.eval(), face.eval()
        diff = (dual(x) - face(dual.views(x)[0])).abs().max().item()
    if diff > 1e-3:
        raise SystemExit(f"the warm start does not reproduce the face model (max diff {diff})")
    save_checkpoint(out, dual, build_manifest(dual))
    print(f"wrote {out} (starts as {face_ckpt} on the face view; max diff {diff:.1e})")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
