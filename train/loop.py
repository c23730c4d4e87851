"""The training loop: AdamW + warm-up/cosine LR, flip + jitter + degradation + random erasing,
optional EMA and distillation, AMP on CUDA, DDP under torchrun (DistributedSampler, gloo on CPU,
nccl on GPU), a checkpoint every epoch (atomic), exact resume, best-on-validation kept, metrics
JSON + training-curve PNG.

Augmentation randomness is a pure function of (seed, epoch, sample index) and the shuffle order
of (seed, epoch), and the torch RNG state is saved with every checkpoint, so a run killed and
resumed ends with the same weights as an uninterrupted one (on CPU)."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler

from edgeage.checkpoint import TorchModel, build_manifest, load_model, read_checkpoint, save_checkpoint
from edgeage.manifest import Manifest, ReadoutSpec
from edgeage.pipeline import AgeEstimator
from edgeage.data import is_prepared, load_prepared, prepare, split, split_record
from edgeage.degrade import DegradationConfig, Degrader
from edgeage.metrics import summary
from edgeage.models import create
from edgeage.preprocess import CropParams, Normalize, grey, model_input
from edgeage.utils import EdgeAgeError, check_output, output_dir, write_json

from .losses import distill_loss, distill_to_probs, make_loss
from .recipes import DegradeSection, Recipe, TrainSection, load_recipe


class AugmentedFaces(Dataset):
    """uint8 canonical crops -> augmented uint8 crops + ages. Randomness from (seed, epoch, i)."""

    def __init__(self, crops, ages, indices, cfg: TrainSection, degrade: DegradeSection, seed: int, train: bool,
                 undegraded: bool = False):
        self.crops, self.ages, self.idx = crops, ages, np.asarray(indices)
        self.cfg, self.seed, self.train, self.epoch = cfg, seed, train, 0
        self.undegraded = undegraded  # also return each crop before degradation, grey and erasing
        self.deg_cfg = degrade
        self.degrader = Degrader(DegradationConfig(p=degrade.p, strength=degrade.strength,
                                                      min_scale=degrade.min_scale, op_p=dict(degrade.op_p)))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self):
        return len(self.idx)

    def __getitem__(self, i):
        j = int(self.idx[i])
        img = np.asarray(self.crops[j])
        clean = img
        if self.train:
            rng = np.random.default_rng([self.seed, self.epoch, j])
            clean = geometry(img, rng, self.cfg)
            img = corrupt(clean, rng, self.cfg, self.degrader, self.deg_cfg)
        item = (torch.from_numpy(np.ascontiguousarray(img)), torch.tensor(float(self.ages[j])), i)
        return item + (torch.from_numpy(np.ascontiguousarray(clean)),) if self.undegraded else item


def augment(img: np.ndarray, rng: np.random.Generator, cfg: TrainSection, degrader: Degrader,
            deg: DegradeSection) -> np.ndarray:
    """A training crop's whole augmentation: its geometry, then its corruption."""
    return corrupt(geometry(img, rng, cfg), rng, cfg, degrader, deg)


def geometry(img: np.ndarray, rng: np.random.Generator, cfg: TrainSection) -> np.ndarray:
    """Scale / shift / rotation jitter and the flip: what moves the face, not what hides it."""
    import cv2

    s = img.shape[0]
    j = cfg.jitter
    if j > 0:  # small scale / shift / rotation: robustness to face-box jitter on other photos
        scale = 1.0 + rng.uniform(-j, j)
        ang = rng.uniform(-10 * j / 0.05, 10 * j / 0.05) if cfg.rotate else 0.0
        m = cv2.getRotationMatrix2D((s / 2, s / 2), ang, scale)
        m[:, 2] += rng.uniform(-j, j, size=2) * s
        img = cv2.warpAffine(img, m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if rng.random() < cfg.flip:
        img = img[:, ::-1]
    return img


def corrupt(img: np.ndarray, rng: np.random.Generator, cfg: TrainSection, degrader: Degrader,
            deg: DegradeSection) -> np.ndarray:
    """The degradation model, greyscale and random erasing: what the camera and occlusion take away."""
    s = img.shape[0]
    if deg.p > 0 or any(deg.op_p.values()):
        lo = deg.strength_min
        degrader.cfg.strength = float(rng.uniform(lo, deg.strength)) if lo < deg.strength else deg.strength
        img = degrader(np.ascontiguousarray(img), rng)
    if cfg.grayscale and rng.random() < cfg.grayscale:  # after degradation: the frame stays grey
        img = grey(img)
    if rng.random() < cfg.erasing:  # random erasing (Zhong et al.), noise fill
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


def lr_schedule(total_steps: int, warmup_steps: int):
    def f(step):
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return f


def _load_set(path: str, crop: CropParams, skip_bad: bool, progress: bool, labelled: bool = True):
    if is_prepared(path):
        prep = load_prepared(path, expect_crop=crop)
        if not labelled:  # a labelled cache given as unlabelled: its ages are not used
            prep = dataclasses.replace(prep, ages=np.full_like(prep.ages, np.nan))
        elif np.isnan(prep.ages).any():
            raise EdgeAgeError(f"{path}: {int(np.isnan(prep.ages).sum())} of its faces have no age (prepared "
                               "--unlabelled): give it as [data] unlabelled / --unlabelled-data")
        return prep
    return prepare(path, crop, skip_bad=skip_bad, progress=progress, labelled=labelled)


def load_data(recipe: Recipe, progress: bool):
    """(prepared crops, split indices, split record) of ``[data]``: the seeded split of
    ``path``, plus every image of each ``[data] extra`` set appended to the training part only
    (validation and test stay ``path``'s, so runs with and without extra data compare)."""
    d = recipe.data
    crop = CropParams(margin=d.crop_margin, shift_y=d.crop_shift_y, crop_size=d.crop_size, policy=d.crop)
    prep = _load_set(d.path, crop, d.skip_bad, progress)
    parts = split(prep.names, seed=d.seed, val=d.val, test=d.test)
    if 0 < d.train_subset < len(parts["train"]):  # short ablation schedules; val/test unchanged
        rng = np.random.default_rng(d.seed)
        parts["train"] = np.sort(rng.choice(parts["train"], d.train_subset, replace=False))
    main_hash = prep.lhash  # the record keeps the main set's file-list hash: checkpoints compare on it
    extra = []
    if d.extra or d.unlabelled:
        prep, parts, extra = add_extra_sets(prep, parts, d, crop, progress)
    rec = split_record(prep.names, parts, d.seed, d.val, d.test, main_hash)
    if extra:
        rec["extra"] = extra
    return prep, parts, rec


def add_extra_sets(prep, parts: dict, d, crop: CropParams, progress: bool):
    """``prep`` with the crops of every ``d.extra`` set and every ``d.unlabelled`` set (ages NaN)
    appended, and their indices appended to ``parts["train"]``. A set with an image of ``d.path``'s
    validation or test part (the same file name, or a byte-identical face crop: a renamed copy) is
    refused: it would train on the faces the run is measured on. Returns (prep, parts, one record
    per added set)."""
    import hashlib

    def digest(crop) -> bytes:
        return hashlib.blake2b(np.ascontiguousarray(crop).tobytes(), digest_size=16).digest()

    held = {prep.names[i]: k for k in ("val", "test") for i in parts[k]}
    held_crops = {digest(prep.crops[i]): (k, prep.names[i]) for k in ("val", "test") for i in parts[k]}
    records, sets = [], []
    for path, labelled in [(p, True) for p in d.extra] + [(p, False) for p in d.unlabelled]:
        ex = _load_set(path, crop, d.skip_bad, progress, labelled)
        key = "extra" if labelled else "unlabelled"
        clash = {n: (held[n], n) for n in ex.names if n in held}
        clash.update({n: held_crops[h] for n, c in zip(ex.names, ex.crops)
                      if n not in clash and (h := digest(c)) in held_crops})
        if clash:
            n, (part, main_name) = next(iter(clash.items()))
            raise EdgeAgeError(f"[data] {key} {path}: {len(clash)} of its images are images of the {part} split of "
                               f"{d.path} (the same file name or the same face crop; first: {n}"
                               + (f" = {main_name}" if n != main_name else "") + "); training on them would "
                               f"measure the model on faces it was trained on. Remove them from the {key} set")
        sets.append(ex)
        records.append({"path": str(path), "list_hash": ex.lhash, "n": len(ex.names)} |
                       ({} if labelled else {"labelled": False}))
    n0 = len(prep.names)
    new_idx = np.arange(n0, n0 + sum(len(e.names) for e in sets))
    every = [prep, *sets]
    boxes = None
    if all(e.face_box is not None for e in every):
        boxes = np.concatenate([e.face_box for e in every])
    merged = dataclasses.replace(
        prep, crops=np.concatenate([e.crops for e in every]), ages=np.concatenate([e.ages for e in every]),
        names=[n for e in every for n in e.names], face_found=np.concatenate([e.face_found for e in every]),
        lhash=hashlib.sha256(json.dumps([prep.lhash] + [r["list_hash"] for r in records]).encode()).hexdigest(),
        skipped=[s for e in every for s in e.skipped], groups=None, face_box=boxes)
    parts = dict(parts, train=np.concatenate([parts["train"], new_idx]))
    return merged, parts, records


@dataclasses.dataclass
class Run:
    """One training run: the state it carries and its steps, in order ``Run.create`` ->
    ``build_model`` -> ``distillation`` -> ``make_loader`` -> ``make_optimiser`` -> [``resume``] ->
    per epoch ``train_epoch`` (``step`` per batch) and ``validate_and_checkpoint``. ``train``
    drives one run; ``edgeage.train.multi.train_together`` drives several on one augmented stream."""

    recipe: Recipe
    out: Path
    device: torch.device
    world: int = 1
    rank: int = 0
    local: int = 0
    progress: bool = True
    model: torch.nn.Module | None = None
    normalize: Normalize | None = None
    loss_fn: object = None
    teacher: torch.nn.Module | None = None
    soft: torch.Tensor | None = None
    ds: Dataset | None = None
    sampler: "DistributedSampler | BalancedSampler | None" = None
    loader: DataLoader | None = None
    opt: torch.optim.Optimizer | None = None
    sched: object = None
    ema: torch.optim.swa_utils.AveragedModel | None = None
    net: torch.nn.Module | None = None
    start: int = 0
    history: list = dataclasses.field(default_factory=list)
    best: dict = dataclasses.field(default_factory=lambda: {"val_mae": math.inf, "epoch": -1})

    @property
    def ddp(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def tc(self) -> TrainSection:
        return self.recipe.train

    @classmethod
    def create(cls, recipe, out, progress: bool, force: bool) -> "Run":
        """A run of ``recipe`` (a Recipe, or a shipped name / TOML path) into ``out``: devices (DDP under
        torchrun), the output folder checked (nothing is created yet), the seed set."""
        recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
        world, rank, local = _dist_info()
        if world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        device = torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        run = cls(recipe, Path(out), device, world, rank, local, progress)
        if run.main:
            check_output(run.out, force)  # nothing is created before the recipe, data and model are known good
        torch.manual_seed(run.tc.seed)
        return run

    def build_model(self, model, force: bool) -> None:
        """The recipe's model (or ``model``), on the device; ``[train] init``: a warm restart from
        trained weights (``init_skip``: comma-separated key prefixes, e.g. ``head.``, left at their
        fresh initialization, to put a new head on a trained backbone or a new branch beside it).
        The run folder is created only now, when everything before is known good."""
        mcfg = dict(self.recipe.model)
        name = mcfg.pop("name")
        given = model is not None
        self.model = (model if given else create(name, **mcfg)).to(self.device)
        ctx = self.model.config.get("context_margin")
        if ctx and self.recipe.data.crop_margin != float(ctx):
            raise EdgeAgeError(f"model {name!r} takes its face view as the central 1/{ctx} of the canonical crop: "
                               f"set [data] crop_margin = {ctx} (the context margin), not "
                               f"{self.recipe.data.crop_margin}")
        init = self.tc.init
        if init and not given:
            init_model, _ = load_model(init)
            skip = tuple(p.strip() for p in self.tc.init_skip.split(",") if p.strip())
            state = {k: v for k, v in init_model.state_dict().items() if not k.startswith(skip)}
            try:
                missing, unexpected = self.model.load_state_dict(state, strict=not skip)
                stray = [k for k in missing if not k.startswith(skip)] + list(unexpected)
                if stray:
                    raise RuntimeError(f"keys outside init_skip do not match: {', '.join(stray[:4])}")
            except RuntimeError as e:
                raise EdgeAgeError(f"[train] init = {init!r}: weights do not fit model {name!r} "
                                   f"({str(e).splitlines()[0]})") from None
            del init_model
        if self.main:  # the run folder only once the model and its start are known good
            output_dir(self.out, force, kind="training-run")
        self.normalize = Normalize(input_size=int(self.model.config["input_size"]))
        self.loss_fn = make_loss(self.model.head.spec, self.model.head.kind, self.tc.sord_temperature,
                                self.tc.label_smoothing)

    def distillation(self, teacher_model, prep, parts) -> None:
        """An online teacher (in memory or [distill] teacher, mode online) or the clean-mode targets."""
        dc = self.recipe.distill
        teachers = teacher_paths(dc.teacher)
        if teacher_model is not None:
            if teachers:
                raise EdgeAgeError("train(teacher_model=...) replaces [distill] teacher: leave that empty")
            self.teacher = teacher_model.to(self.device).eval()
        elif teachers and dc.mode == "online":
            if len(teachers) == 1 and dc.views == 1:  # any head: its own outputs (bins) or its ages (L1)
                teacher, _ = load_model(teachers[0])
                self.teacher = teacher.to(self.device).eval()
            else:
                self.teacher = OnlineEnsemble(teachers, prep, self.model.head.spec, dc.views,
                                              int(self.model.config["input_size"]), self.device)
        elif teachers:
            self.soft = torch.from_numpy(clean_teacher_targets(
                teachers, prep, parts["train"], self.model.head.spec, dc.temperature, self.device,
                self.out / "teacher_targets.npz", self.progress and self.main, dc.views,
                prep.lhash if self.recipe.data.extra or self.recipe.data.unlabelled else ""))

    def make_loader(self, prep, parts) -> int | None:
        tc = self.tc
        self.ds = AugmentedFaces(prep.crops, prep.ages, parts["train"], tc, self.recipe.degrade, tc.seed, train=True,
                                 undegraded=self.recipe.distill.teacher_view == "undegraded")
        per_proc_batch = max(1, tc.batch_size // self.world)
        if tc.age_balance > 0:
            self.sampler = BalancedSampler(age_balance_weights(prep.ages[parts["train"]], tc.age_balance),
                                           num_replicas=self.world, rank=self.rank, seed=tc.seed)
        else:
            self.sampler = DistributedSampler(self.ds, num_replicas=self.world, rank=self.rank, shuffle=True,
                                             seed=tc.seed, drop_last=True)
        self.loader = DataLoader(self.ds, batch_size=per_proc_batch, sampler=self.sampler, drop_last=True,
                                num_workers=tc.num_workers, persistent_workers=False,  # workers must see set_epoch
                                pin_memory=self.device.type == "cuda")
        cv_threads = _one_cv_thread_per_worker(tc.num_workers)
        if len(self.loader) == 0:
            raise EdgeAgeError(f"training split has {len(self.ds)} images, fewer than one batch of {per_proc_batch}")
        return cv_threads

    def make_optimiser(self) -> None:
        tc, steps = self.tc, len(self.loader)
        epochs = tc.epochs
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lr_schedule(epochs * steps, int(tc.warmup_epochs * steps)))
        if tc.ema_decay > 0:
            self.ema = torch.optim.swa_utils.AveragedModel(self.model, avg_fn=ema_avg(tc.ema_decay),
                                                          use_buffers=True)
        self.net = torch.nn.parallel.DistributedDataParallel(
            self.model, device_ids=[self.local] if self.device.type == "cuda" else None) if self.ddp else self.model

    def resume(self) -> None:
        last = self.out / "last.pt"
        if not last.is_file():
            return
        ck = read_checkpoint(last, own_output=True)
        st = ck["train_state"]
        try:  # compared as recipes: a recorded 1 and 1.0 are the same learning rate
            same = Recipe.from_dict(st["recipe"], f"{last}: recipe") == self.recipe
        except EdgeAgeError:
            same = False
        if not same:
            raise EdgeAgeError(f"{last}: was trained with a different recipe; use another --out "
                               "or drop --resume")
        self.model.load_state_dict(ck["state_dict"])
        self.opt.load_state_dict(st["optimizer"])
        self.sched.load_state_dict(st["scheduler"])
        if self.ema is not None:
            self.ema.load_state_dict(st["ema"])
        torch.set_rng_state(st["torch_rng"])
        self.start, self.history, self.best = st["epoch"], st["history"], st["best"]
        if self.main and self.progress:
            print(f"resuming {last} at epoch {self.start + 1}/{self.tc.epochs}")

    def train_epoch(self, epoch: int) -> dict:
        """One epoch of optimiser steps; returns the epoch's record (loss, lr, throughput)."""
        from tqdm import tqdm

        tc, device = self.tc, self.device
        self.net.train()
        self.sampler.set_epoch(epoch)
        self.ds.set_epoch(epoch)
        t0, seen, run_loss = time.time(), 0, 0.0
        bar = tqdm(self.loader, desc=f"epoch {epoch + 1}/{tc.epochs}", unit="batch",
                   disable=not (self.progress and self.main), mininterval=5.0, leave=False)
        for imgs, ages, pos, *clean in bar:
            x = model_input(imgs.to(device, non_blocking=True), self.normalize)
            xt = model_input(clean[0].to(device, non_blocking=True), self.normalize) if clean else None
            ages = ages.to(device)
            loss = self.step(x, ages, pos, xt)
            seen += len(ages)
            run_loss += float(loss.detach()) * len(ages)
            bar.set_postfix(loss=f"{run_loss / seen:.3f}")
        dt = time.time() - t0
        return {"epoch": epoch + 1, "train_loss": run_loss / max(seen, 1), "lr": self.sched.get_last_lr()[0],
                "images_per_s": seen * self.world / dt, "epoch_s": dt}

    def label_loss(self, outp, ages) -> torch.Tensor:
        """The head's loss on the faces that have an age; faces without one ([data] unlabelled: NaN)
        add nothing to it (the distillation term trains on them), and the loss is scaled by the
        labelled share so a labelled face weighs the same in every batch."""
        known = ~torch.isnan(ages)
        if bool(known.all()):
            return self.loss_fn(outp, ages)
        if not isinstance(outp, torch.Tensor):
            raise EdgeAgeError(f"[data] unlabelled: head {self.model.head.kind!r} returns more than one tensor, so "
                               "its loss cannot skip the faces without an age; use a bin or regression head")
        if not bool(known.any()):
            return outp.sum() * 0.0  # keeps the graph (and autocast's dtype) for the distillation term
        return self.loss_fn(outp[known], ages[known]) * known.float().mean()

    def step(self, x, ages, pos, xt=None) -> torch.Tensor:
        """One optimiser step of this run on a batch (model inputs on the device, ages, the batch's
        positions in the training set for clean distillation targets, and the online teacher's
        inputs when they differ from the student's: [distill] teacher_view = "undegraded"): the
        recipe's loss (+ distillation), backward, clipping, AdamW, the schedule and the EMA. Returns
        the loss, detached (no host sync)."""
        tc, device = self.tc, self.device
        use_amp = device.type == "cuda" and tc.amp
        a, temp = self.recipe.distill.alpha, self.recipe.distill.temperature
        lam, perm = mixup_draw(tc.mixup, len(ages), device)
        if perm is not None:  # the teacher sees the same mixed faces as the student (consistent teaching)
            x = lam * x + (1 - lam) * x[perm]
            if xt is not None:
                xt = lam * xt + (1 - lam) * xt[perm]
        if xt is None:
            xt = x
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            outp = self.net(x)
            loss = self.label_loss(outp, ages)
            if perm is not None:
                loss = lam * loss + (1 - lam) * self.label_loss(outp, ages[perm])
            if isinstance(self.teacher, OnlineEnsemble):
                loss = (1 - a) * loss + a * distill_to_probs(outp, self.teacher.probs(xt, temp), temp)
            elif self.teacher is not None:
                with torch.no_grad():
                    t_out = self.teacher(xt)
                loss = (1 - a) * loss + a * distill_loss(outp, t_out, self.model.head.spec, temp)
            elif self.soft is not None:
                soft = self.soft[pos].to(device)
                if perm is not None:
                    soft = lam * soft + (1 - lam) * soft[perm]
                loss = (1 - a) * loss + a * distill_to_probs(outp, soft, temp)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
        self.opt.step()
        self.sched.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return loss.detach()

    def validate_and_checkpoint(self, epoch: int, rec: dict, prep, parts, split_rec: dict) -> None:
        """Validation MAE of the raw and the EMA weights (the better one kept), best.pt when it
        improves, last.pt (with the training state), metrics.json and curve.png every epoch."""
        model, out = self.model, self.out
        if not math.isfinite(rec["train_loss"]) or not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
            raise EdgeAgeError(f"training diverged in epoch {epoch + 1} (train loss {rec['train_loss']:g}, weights not "
                               f"finite): nothing of this epoch was saved. Lower [train] lr (now {self.tc.lr:g}) or "
                               "check the labels")
        vman = build_manifest(model, self.normalize, prep.crop)  # preprocessing + readout for validation
        res, _ = evaluate_split(model, prep, parts["val"], vman, self.device)
        keep = model
        if self.ema is not None:  # keep whichever of the raw and the averaged weights is better
            res_ema, _ = evaluate_split(self.ema.module, prep, parts["val"], vman, self.device)
            rec["val_mae_raw"], rec["val_mae_ema"] = res["mae"], res_ema["mae"]
            if res_ema["mae"] < res["mae"]:
                res, keep = res_ema, self.ema.module
        rec.update(val_mae=res["mae"], val_cs5=res["cs5"], kept="ema" if keep is not model else "raw")
        self.history.append(rec)
        manifest = build_manifest(model, self.normalize, prep.crop, {
            "recipe": self.recipe.to_dict(), "split": split_rec, "epoch": epoch + 1, "val": res,
            "weights": rec["kept"], "faces_not_found_in_data": prep.faces_not_found})
        if res["mae"] < self.best["val_mae"]:
            self.best = {"val_mae": res["mae"], "val_cs5": res["cs5"], "epoch": epoch + 1}
            save_checkpoint(out / "best.pt", keep, manifest)
        state = {"epoch": epoch + 1, "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                 "ema": self.ema.state_dict() if self.ema is not None else None,
                 "torch_rng": torch.get_rng_state(), "history": self.history, "best": self.best,
                 "recipe": self.recipe.to_dict()}
        save_checkpoint(out / "last.pt", model, manifest, state)
        write_json(out / "metrics.json", {"history": self.history, "best": self.best, "split": split_rec})
        plot_curves(out / "curve.png", self.history)
        if self.progress:
            print(f"epoch {epoch + 1}/{self.tc.epochs}  loss {rec['train_loss']:.4f}  val MAE "
                  f"{res['mae']:.3f}  CS5 {res['cs5']:.3f}  {rec['images_per_s']:.0f} img/s", flush=True)


def train(recipe: Recipe | str, out: str | os.PathLike, resume: bool = False, progress: bool = True,
          stop_after: int | None = None, model: torch.nn.Module | None = None,
          data: tuple | None = None, teacher_model: torch.nn.Module | None = None,
          force: bool = False) -> dict:
    """Run (or resume) a recipe (a ``Recipe``, or a shipped name / TOML path); returns the metrics dict. ``stop_after`` ends this run after that
    many epochs (the checkpoint can be resumed). ``model``: train this model instead of building
    the recipe's (pruning / QAT fine-tunes); ``data``: an already loaded (prep, parts, split);
    ``teacher_model``: an online teacher already in memory (QAT distils from the float model),
    weighted by the recipe's [distill] alpha and temperature, in place of [distill] teacher.

    The steps: set up (recipe, devices, output check) -> data -> model -> distillation ->
    loader -> optimiser -> resume -> per epoch: train, then validate and checkpoint."""
    run = Run.create(recipe, out, progress, force)
    if run.ddp and not run.main:  # rank 0 prepares (and caches) the crops, the others read the cache
        dist.barrier()
    prep, parts, split_rec = data or load_data(run.recipe, progress and run.main)
    if run.ddp and run.main:
        dist.barrier()
    check_split(run.recipe, prep, parts)
    run.build_model(model, force)
    run.distillation(teacher_model, prep, parts)
    cv_threads = run.make_loader(prep, parts)
    run.make_optimiser()
    if resume:
        run.resume()
    epochs = run.tc.epochs
    end = epochs if stop_after is None else min(epochs, run.start + stop_after)
    for epoch in range(run.start, end):
        rec = run.train_epoch(epoch)
        if run.main:
            run.validate_and_checkpoint(epoch, rec, prep, parts, split_rec)
        else:
            run.history.append(rec)
        if run.ddp:
            dist.barrier()
    if cv_threads is not None:
        import cv2

        cv2.setNumThreads(cv_threads)
    return {"history": run.history, "best": run.best, "split": split_rec, "out": str(run.out)}


def check_split(recipe: Recipe, prep, parts) -> None:
    for part in ("train", "val"):
        if len(parts[part]) == 0:
            raise EdgeAgeError(f"{recipe.data.path}: the {part} split is empty ({len(prep.names)} images, "
                               f"[data] val = {recipe.data.val}, test = {recipe.data.test}); give more "
                               "images or larger fractions")


def teacher_paths(value) -> list[str]:
    """[distill] teacher: "" (none), one checkpoint path, or a list of them (an ensemble)."""
    if not value:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def teacher_targets_key(shas: list[str], temperature: float, views: int, idx, data: str = "") -> str:
    """The cache key of clean-mode teacher targets: the teachers' SHA-256, the temperature, the
    views and the training split's indices (and ``data``, the list hash of the merged sets when
    ``[data] extra`` adds some: the same indices then name other images)."""
    import hashlib

    key = [shas, temperature, views, np.asarray(idx).tolist()] + ([data] if data else [])
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()


def load_bin_teacher(path: str, prep, spec: ReadoutSpec, mode: str) -> torch.nn.Module:
    """A teacher checkpoint for the distribution-averaging modes (clean, or online with an ensemble
    or mirrors): it must read the student's crop and give the student's age bins."""
    t, tman = load_model(path)
    tcrop = tman.crop
    if (tcrop.margin, tcrop.shift_y) != (prep.crop.margin, prep.crop.shift_y):
        raise EdgeAgeError(f"[distill] teacher {path}: it reads crops at margin {tcrop.margin}, shift_y "
                           f"{tcrop.shift_y}, but this run's crops are at margin {prep.crop.margin}, "
                           f"shift_y {prep.crop.shift_y}; mode = {mode!r} runs the teacher on the student's "
                           "crops, so use a teacher trained on the same crop (or no [distill])")
    if t.head.spec.type != "expectation" or t.head.spec.to_dict() != spec.to_dict():
        raise EdgeAgeError(f"[distill] teacher {path}: head {t.head.kind!r} {t.head.spec.to_dict()} does not "
                           f"give the student's age-bin distribution ({spec.to_dict()}); mode = {mode!r} with "
                           "an ensemble or views = 2 needs SORD / DEX-style teachers with the same bins")
    return t


class OnlineEnsemble:
    """[distill] mode = "online" with several teachers or ``views`` = 2: every step, each teacher reads
    the student's own augmented (and mixed) batch, resized to the teacher's input size, and its mirror
    (views = 2); their softened age-bin distributions are averaged. Consistent teaching: the target is
    the teachers' view of exactly the image the student sees, not of the clean face."""

    def __init__(self, paths: list[str], prep, spec: ReadoutSpec, views: int, student_size: int, device):
        self.views = views
        self.student_size = student_size
        self.teachers = []
        for p in paths:
            t = load_bin_teacher(p, prep, spec, "online").to(device).eval()
            for q in t.parameters():
                q.requires_grad_(False)
            self.teachers.append((t, int(t.config["input_size"])))

    @torch.no_grad()
    def probs(self, x: torch.Tensor, temperature: float) -> torch.Tensor:
        """The averaged softened distributions for model inputs ``x`` (normalized, the student's size)."""
        import torch.nn.functional as F

        total = 0
        for t, size in self.teachers:
            xt = x if size == self.student_size else F.interpolate(
                x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
            total = total + view_probs(t, xt, temperature, self.views)
        return total / len(self.teachers)


def view_probs(t: torch.nn.Module, x: torch.Tensor, temperature: float, views: int) -> torch.Tensor:
    """One teacher's softened age-bin distribution for inputs ``x``, averaged with its mirror's
    (``views`` = 2): the target both distillation modes build from."""
    vs = (x, torch.flip(x, dims=[3]))[:views]
    return sum(torch.softmax(t(v).float() / temperature, 1) for v in vs) / views


def smoothed_age_histogram(years: np.ndarray, length: int, sigma: float) -> np.ndarray:
    """The count of each whole year 0..length-1 in ``years`` (clipped into that range), convolved
    with a Gaussian of ``sigma`` years: label distribution smoothing (Yang et al., ICML 2021)."""
    hist = np.bincount(np.clip(np.asarray(years, int), 0, length - 1), minlength=length).astype(np.float64)
    x = np.arange(length)
    return np.exp(-(x[:, None] - x[None, :]) ** 2 / (2 * sigma ** 2)) @ hist


def age_balance_weights(ages: np.ndarray, beta: float, sigma: float = 2.0) -> np.ndarray:
    """[train] age_balance: each training face's sampling weight, the smoothed density of its age
    (whole-year histogram convolved with a Gaussian of ``sigma`` years: label distribution smoothing,
    Yang et al., ICML 2021) to the power -``beta``; a face without an age ([data] unlabelled) weighs
    the mean of the others. Mean weight 1."""
    ages = np.asarray(ages, np.float64)
    known = ~np.isnan(ages)
    w = np.ones(len(ages))
    if beta > 0 and known.any():
        years = np.clip(np.rint(ages[known]), 0, None).astype(int)
        w[known] = smoothed_age_histogram(years, int(years.max()) + 1, sigma)[years] ** -beta
        w[~known] = w[known].mean()
    return w / w.mean()


class BalancedSampler(Sampler):
    """Draws an epoch of training positions with replacement, in proportion to ``weights``
    ([train] age_balance), from a generator seeded by (seed, epoch) so ``--resume`` replays the same
    draws; under DDP each process takes every ``num_replicas``-th draw."""

    def __init__(self, weights: np.ndarray, num_replicas: int = 1, rank: int = 0, seed: int = 0):
        self.weights = torch.as_tensor(np.asarray(weights, np.float64))
        self.num_replicas, self.rank, self.seed, self.epoch = num_replicas, rank, seed, 0
        self.total = len(self.weights) - len(self.weights) % num_replicas

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        draws = torch.multinomial(self.weights, self.total, replacement=True, generator=g)
        return iter(draws[self.rank::self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.total // self.num_replicas


def mixup_draw(alpha: float, n: int, device):
    """[train] mixup: a mixing weight from Beta(alpha, alpha) and a shuffle of the batch, or (1, None)
    when it is off. Drawn from torch's global generator (seeded, and saved in last.pt for --resume)."""
    if alpha <= 0 or n < 2:
        return 1.0, None
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    return lam, torch.randperm(n).to(device)


def clean_teacher_targets(paths: list[str], prep, idx, spec: ReadoutSpec, temperature: float, device,
                          cache: Path, progress: bool, views: int = 2, data: str = "") -> np.ndarray:
    """Offline distillation targets ([distill] mode = "clean"): each teacher's softened age-bin
    distribution on the clean crop (and on its mirror: ``views`` = 2), averaged over views and
    teachers, once per training image. The student then learns them from its augmented, degraded view of the same
    face, so the teachers run once instead of every step (and see the clean face). Cached in the
    run folder, keyed by the teachers' SHA-256, the temperature and the training split."""
    from edgeage.checkpoint import read_checkpoint

    shas = [read_checkpoint(p)["sha256"] for p in paths]
    if views not in (1, 2):
        raise EdgeAgeError(f"[distill] views = {views}: 1 (the crop) or 2 (crop and mirror)")
    key = teacher_targets_key(shas, temperature, views, idx, data)
    if cache.is_file():
        with np.load(cache) as z:
            if str(z["key"]) == key:
                return z["probs"]
    total = None
    for p in paths:
        t = load_bin_teacher(p, prep, spec, "clean")
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
                probs.append(view_probs(t, x, temperature, views).cpu())
        probs = torch.cat(probs).numpy()
        total = probs if total is None else total + probs
        del t
    probs = (total / len(paths)).astype(np.float32)
    from edgeage.utils import atomic_path

    with atomic_path(cache) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, key=key, probs=probs)
    return probs


def evaluate_split(model, prep, idx, manifest: Manifest, device):
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
