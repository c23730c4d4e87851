"""The training loop: AdamW + warm-up/cosine LR, flip + jitter + degradation + random erasing,
optional EMA and distillation, AMP on CUDA, DDP under torchrun (DistributedSampler, gloo on CPU,
nccl on GPU), a checkpoint every epoch (atomic), exact resume, best-on-validation kept, metrics
JSON + training-curve PNG.

Augmentation randomness is a pure function of (seed, epoch, sample index) and the shuffle order
of (seed, epoch), and the torch RNG state is saved with every checkpoint, so a run killed and
resumed ends with the same weights as an uninterrupted one (on CPU)."""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from edgeage.checkpoint import TorchModel, build_manifest, load_model, read_checkpoint, save_checkpoint
from edgeage.pipeline import AgeEstimator
from edgeage.data import is_prepared, load_prepared, prepare, split, split_record
from edgeage.degrade import DegradationConfig, Degrader
from edgeage.metrics import summary
from edgeage.models import create
from edgeage.preprocess import CropParams, Normalize, model_input
from edgeage.utils import EdgeAgeError, check_output, output_dir, write_json

from .losses import distill_loss, distill_to_probs, make_loss
from .recipes import load_recipe, validate_recipe


class AugmentedFaces(Dataset):
    """uint8 canonical crops -> augmented uint8 crops + ages. Randomness from (seed, epoch, i)."""

    def __init__(self, crops, ages, indices, cfg: dict, degrade: dict, seed: int, train: bool):
        self.crops, self.ages, self.idx = crops, ages, np.asarray(indices)
        self.cfg, self.seed, self.train, self.epoch = cfg, seed, train, 0
        self.deg_cfg = degrade
        self.degrader = Degrader(DegradationConfig(p=degrade["p"], strength=degrade["strength"]))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self):
        return len(self.idx)

    def __getitem__(self, i):
        j = int(self.idx[i])
        img = np.asarray(self.crops[j])
        if self.train:
            rng = np.random.default_rng([self.seed, self.epoch, j])
            img = augment(img, rng, self.cfg, self.degrader, self.deg_cfg)
        return torch.from_numpy(np.ascontiguousarray(img)), torch.tensor(float(self.ages[j])), i


def augment(img: np.ndarray, rng: np.random.Generator, cfg: dict, degrader: Degrader,
            deg: dict) -> np.ndarray:
    import cv2

    s = img.shape[0]
    j = cfg["jitter"]
    if j > 0:  # small scale / shift / rotation: robustness to face-box jitter on other photos
        scale = 1.0 + rng.uniform(-j, j)
        ang = rng.uniform(-10 * j / 0.05, 10 * j / 0.05) if cfg.get("rotate", True) else 0.0
        m = cv2.getRotationMatrix2D((s / 2, s / 2), ang, scale)
        m[:, 2] += rng.uniform(-j, j, size=2) * s
        img = cv2.warpAffine(img, m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if rng.random() < cfg["flip"]:
        img = img[:, ::-1]
    if deg["p"] > 0:
        lo = deg.get("strength_min", deg["strength"])
        degrader.cfg.strength = float(rng.uniform(lo, deg["strength"])) if lo < deg["strength"] else deg["strength"]
        img = degrader(np.ascontiguousarray(img), rng)
    if rng.random() < cfg["erasing"]:  # random erasing (Zhong et al.), noise fill
        area = rng.uniform(0.02, 0.2) * s * s
        ar = math.exp(rng.uniform(math.log(0.3), math.log(3.3)))
        h = min(s, int(round(math.sqrt(area * ar))))
        w = min(s, int(round(math.sqrt(area / ar))))
        y, x = rng.integers(0, s - h + 1), rng.integers(0, s - w + 1)
        img = img.copy()
        img[y:y + h, x:x + w] = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    return img


def _one_cv_thread_per_worker(num_workers: int) -> int | None:
    """With loader workers, OpenCV runs one thread in each: its default pool (a thread per core)
    in every worker oversubscribes the CPU several times over on 96x96 crops. Set in this process
    before the workers fork (cv2.setNumThreads inside a forked worker deadlocks); returns the old
    count to restore after training."""
    if num_workers <= 0:
        return None
    import cv2

    old = cv2.getNumThreads()
    cv2.setNumThreads(1)
    return old


def ema_avg(decay: float):
    """EMA with the usual warm-up, d_t = min(decay, (1 + t) / (10 + t)): without it the average
    keeps the random early weights for thousands of steps."""

    def avg(avg_p, p, n):
        d = min(decay, (1.0 + float(n)) / (10.0 + float(n)))
        return avg_p * d + p * (1.0 - d)

    return avg


def _dist_info():
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return world, rank, local


def _lr_lambda(total_steps: int, warmup_steps: int):
    def f(step):
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return f


def _load_data(recipe: dict, progress: bool):
    d = recipe["data"]
    crop = CropParams(margin=d["crop_margin"], shift_y=d["crop_shift_y"], crop_size=d["crop_size"],
                      policy=d["crop"])
    path = d["path"]
    if is_prepared(path):
        prep = load_prepared(path, expect_crop=crop)
    else:
        prep = prepare(path, crop, skip_bad=d["skip_bad"], progress=progress)
    parts = split(prep.names, seed=d["seed"], val=d["val"], test=d["test"])
    if 0 < d.get("train_subset", 0) < len(parts["train"]):  # short ablation schedules; val/test unchanged
        rng = np.random.default_rng(d["seed"])
        parts["train"] = np.sort(rng.choice(parts["train"], int(d["train_subset"]), replace=False))
    rec = split_record(prep.names, parts, d["seed"], d["val"], d["test"], prep.lhash)
    return prep, parts, rec


def train(recipe: dict | str, out: str | os.PathLike, resume: bool = False, progress: bool = True,
          stop_after: int | None = None, model: torch.nn.Module | None = None,
          data: tuple | None = None, teacher_model: torch.nn.Module | None = None,
          force: bool = False) -> dict:
    """Run (or resume) a recipe; returns the metrics dict. ``stop_after`` ends this run after that
    many epochs (the checkpoint can be resumed). ``model``: train this model instead of building
    the recipe's (pruning / QAT fine-tunes); ``data``: an already loaded (prep, parts, split);
    ``teacher_model``: an online teacher already in memory (QAT distils from the float model),
    weighted by the recipe's [distill] alpha and temperature, in place of [distill] teacher."""
    recipe = load_recipe(recipe) if not isinstance(recipe, dict) else validate_recipe(recipe)
    world, rank, local = _dist_info()
    ddp = world > 1
    tc, dc = recipe["train"], recipe["degrade"]
    if ddp and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    device = torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    main = rank == 0
    out = Path(out)
    if main:
        check_output(out, force)  # nothing is created before the recipe, data and model are known good

    torch.manual_seed(tc["seed"])
    if ddp and not main:  # rank 0 prepares (and caches) the crops, the others read the cache
        dist.barrier()
    prep, parts, split_rec = data or _load_data(recipe, progress and main)
    if ddp and main:
        dist.barrier()
    for part in ("train", "val"):
        if len(parts[part]) == 0:
            raise EdgeAgeError(f"{recipe['data']['path']}: the {part} split is empty ({len(prep.names)} images, "
                               f"[data] val = {recipe['data']['val']}, test = {recipe['data']['test']}); give more "
                               "images or larger fractions")
    mcfg = dict(recipe["model"])
    name = mcfg.pop("name")
    model_arg = model
    model = (model if model is not None else create(name, **mcfg)).to(device)
    if main:
        output_dir(out, force, kind="training-run")
    if tc.get("init") and model_arg is None:  # warm restart: a new LR cycle from trained weights
        init_model, _ = load_model(tc["init"])
        try:
            model.load_state_dict(init_model.state_dict())
        except RuntimeError as e:
            raise EdgeAgeError(f"[train] init = {tc['init']!r}: weights do not fit model {name!r} "
                               f"({str(e).splitlines()[0]})") from None
        del init_model
    normalize = Normalize(input_size=int(model.config["input_size"]))
    loss_fn = make_loss(model.head.spec, model.head.kind, tc["sord_temperature"], tc["label_smoothing"])

    teacher, soft = None, None
    teachers = teacher_paths(recipe["distill"]["teacher"])
    if teacher_model is not None:
        if teachers:
            raise EdgeAgeError("train(teacher_model=...) replaces [distill] teacher: leave that empty")
        teacher = teacher_model.to(device).eval()
    elif teachers and recipe["distill"]["mode"] == "online":
        if len(teachers) > 1:
            raise EdgeAgeError("[distill] mode = 'online' takes one teacher; use mode = 'clean' "
                               "for an ensemble")
        teacher, _ = load_model(teachers[0])
        teacher = teacher.to(device).eval()
    elif teachers:
        soft = torch.from_numpy(clean_teacher_targets(
            teachers, prep, parts["train"], model.head.spec, recipe["distill"]["temperature"],
            device, out / "teacher_targets.npz", progress and main, recipe["distill"]["views"]))

    ds = AugmentedFaces(prep.crops, prep.ages, parts["train"], tc, dc, tc["seed"], train=True)
    per_proc_batch = max(1, tc["batch_size"] // world)
    sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=tc["seed"],
                                 drop_last=True)
    loader = DataLoader(ds, batch_size=per_proc_batch, sampler=sampler, drop_last=True,
                        num_workers=tc["num_workers"], persistent_workers=False,  # workers must see set_epoch
                        pin_memory=device.type == "cuda")
    cv_threads = _one_cv_thread_per_worker(tc["num_workers"])
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise EdgeAgeError(f"training split has {len(ds)} images, fewer than one batch of {per_proc_batch}")
    epochs = int(tc["epochs"])
    opt = torch.optim.AdamW(model.parameters(), lr=tc["lr"], weight_decay=tc["weight_decay"])
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, _lr_lambda(epochs * steps_per_epoch, int(tc["warmup_epochs"] * steps_per_epoch)))
    ema = None
    if tc["ema_decay"] > 0:
        ema = torch.optim.swa_utils.AveragedModel(model, avg_fn=ema_avg(tc["ema_decay"]),
                                                  use_buffers=True)
    net = torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[local] if device.type == "cuda" else None) if ddp else model

    start, history, best = 0, [], {"val_mae": math.inf, "epoch": -1}
    last = out / "last.pt"
    if resume and last.is_file():
        ck = read_checkpoint(last)
        st = ck["train_state"]
        if st["recipe"] != recipe:
            raise EdgeAgeError(f"{last}: was trained with a different recipe; use another --out "
                               "or drop --resume")
        model.load_state_dict(ck["state_dict"])
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        if ema is not None:
            ema.load_state_dict(st["ema"])
        torch.set_rng_state(st["torch_rng"])
        start, history, best = st["epoch"], st["history"], st["best"]
        if main and progress:
            print(f"resuming {last} at epoch {start + 1}/{epochs}")

    use_amp = device.type == "cuda" and tc["amp"]
    from tqdm import tqdm

    end = epochs if stop_after is None else min(epochs, start + stop_after)
    for epoch in range(start, end):
        net.train()
        sampler.set_epoch(epoch)
        ds.set_epoch(epoch)
        t0, seen, run_loss = time.time(), 0, 0.0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{epochs}", unit="batch",
                   disable=not (progress and main), mininterval=5.0, leave=False)
        for imgs, ages, pos in bar:
            x = model_input(imgs.to(device, non_blocking=True), normalize)
            ages = ages.to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                outp = net(x)
                loss = loss_fn(outp, ages)
                a, temp = recipe["distill"]["alpha"], recipe["distill"]["temperature"]
                if teacher is not None:
                    with torch.no_grad():
                        t_out = teacher(x)
                    loss = (1 - a) * loss + a * distill_loss(outp, t_out, model.head.spec, temp)
                elif soft is not None:
                    loss = (1 - a) * loss + a * distill_to_probs(outp, soft[pos].to(device), temp)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc["grad_clip"])
            opt.step()
            sched.step()
            if ema is not None:
                ema.update_parameters(model)
            seen += len(ages)
            run_loss += float(loss.detach()) * len(ages)
            bar.set_postfix(loss=f"{run_loss / seen:.3f}")
        dt = time.time() - t0
        rec = {"epoch": epoch + 1, "train_loss": run_loss / max(seen, 1),
               "lr": sched.get_last_lr()[0], "images_per_s": seen * world / dt, "epoch_s": dt}
        if main:
            vman = build_manifest(model, normalize, prep.crop)  # preprocessing + readout for validation
            res, _ = _eval(model, prep, parts["val"], vman, device)
            keep = model
            if ema is not None:  # keep whichever of the raw and the averaged weights is better
                res_ema, _ = _eval(ema.module, prep, parts["val"], vman, device)
                rec["val_mae_raw"], rec["val_mae_ema"] = res["mae"], res_ema["mae"]
                if res_ema["mae"] < res["mae"]:
                    res, keep = res_ema, ema.module
            rec.update(val_mae=res["mae"], val_cs5=res["cs5"], kept="ema" if keep is not model else "raw")
            history.append(rec)
            manifest = build_manifest(model, normalize, prep.crop, {
                "recipe": recipe, "split": split_rec, "epoch": epoch + 1, "val": res,
                "weights": rec["kept"], "faces_not_found_in_data": prep.faces_not_found})
            if res["mae"] < best["val_mae"]:
                best = {"val_mae": res["mae"], "val_cs5": res["cs5"], "epoch": epoch + 1}
                save_checkpoint(out / "best.pt", keep, manifest)
            state = {"epoch": epoch + 1, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                     "ema": ema.state_dict() if ema is not None else None,
                     "torch_rng": torch.get_rng_state(), "history": history, "best": best,
                     "recipe": recipe}
            save_checkpoint(last, model, manifest, state)
            write_json(out / "metrics.json", {"history": history, "best": best, "split": split_rec})
            plot_curves(out / "curve.png", history)
            if progress:
                print(f"epoch {epoch + 1}/{epochs}  loss {rec['train_loss']:.4f}  val MAE "
                      f"{res['mae']:.3f}  CS5 {res['cs5']:.3f}  {rec['images_per_s']:.0f} img/s",
                      flush=True)
        else:
            history.append(rec)
        if ddp:
            dist.barrier()
    if cv_threads is not None:
        import cv2

        cv2.setNumThreads(cv_threads)
    return {"history": history, "best": best, "split": split_rec, "out": str(out)}


def teacher_paths(value) -> list[str]:
    """[distill] teacher: "" (none), one checkpoint path, or a list of them (an ensemble)."""
    if not value:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def clean_teacher_targets(paths: list[str], prep, idx, spec: dict, temperature: float, device,
                          cache: Path, progress: bool, views: int = 2) -> np.ndarray:
    """Offline distillation targets ([distill] mode = "clean"): each teacher's softened age-bin
    distribution on the clean crop (and on its mirror: ``views`` = 2), averaged over views and
    teachers, once per training image. The student then learns them from its augmented, degraded view of the same
    face, so the teachers run once instead of every step (and see the clean face). Cached in the
    run folder, keyed by the teachers' SHA-256, the temperature and the training split."""
    import hashlib

    from edgeage.checkpoint import read_checkpoint

    shas = [read_checkpoint(p)["sha256"] for p in paths]
    if views not in (1, 2):
        raise EdgeAgeError(f"[distill] views = {views}: 1 (the crop) or 2 (crop and mirror)")
    key = hashlib.sha256(json.dumps([shas, temperature, views, np.asarray(idx).tolist()]).encode()).hexdigest()
    if cache.is_file():
        with np.load(cache) as z:
            if str(z["key"]) == key:
                return z["probs"]
    total = None
    for p in paths:
        t, _ = load_model(p)
        if t.head.spec.get("type") != "expectation" or t.head.spec != spec:
            raise EdgeAgeError(f"[distill] teacher {p}: head {t.head.kind!r} {t.head.spec} does not "
                               f"give the student's age-bin distribution ({spec}); mode = 'clean' "
                               "needs SORD / DEX-style teachers with the same bins")
        t = t.to(device)
        norm = Normalize(input_size=int(t.config["input_size"]))
        probs = []
        it = range(0, len(idx), 256)
        if progress:
            from tqdm import tqdm

            it = tqdm(it, desc=f"teacher {Path(p).name}", unit="batch", mininterval=5.0)
        with torch.no_grad():
            for i in it:
                x = model_input(prep.crops[idx[i:i + 256]], norm).to(device)
                vs = (x, torch.flip(x, dims=[3]))[:views]
                pr = sum(torch.softmax(t(v).float() / temperature, 1) for v in vs)
                probs.append((pr / views).cpu())
        probs = torch.cat(probs).numpy()
        total = probs if total is None else total + probs
        del t
    probs = (total / len(paths)).astype(np.float32)
    from edgeage.utils import atomic_path

    with atomic_path(cache) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, key=key, probs=probs)
    return probs


def _eval(model, prep, idx, manifest: dict, device):
    """Validation in float32 on the training device (eval mode, no autocast), through the same
    AgeEstimator as eval / predict / check."""
    est = AgeEstimator(TorchModel(model, device), manifest)
    pred = est.ages(prep.crops[idx])
    return summary(pred, prep.ages[idx]), pred


def plot_curves(path, history: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgeage.utils import atomic_path

    ep = [h["epoch"] for h in history]
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(13, 3.6))
    a1.plot(ep, [h["train_loss"] for h in history], "o-")
    a1.set_title("train loss")
    a2.plot(ep, [h["val_mae"] for h in history], "o-", color="C1")
    a2.set_title("validation MAE (years)")
    a3.plot(ep, [h["lr"] for h in history], "o-", color="C2")
    a3.set_title("learning rate (end of epoch)")
    for a in (a1, a2, a3):
        a.set_xlabel("epoch")
        a.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
