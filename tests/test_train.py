"""Training on real images: steps, checkpoints, exact resume, DDP on CPU (gloo), and the CLI's
eval / predict contracts."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeage.checkpoint import load_model, read_checkpoint
from edgeage.data import parse_utk_name
from edgeage.train.loop import train
from edgeage.train.recipes import load_recipe

UTK = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "utkface"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("faces")
    files = sorted(os.listdir(UTK))[::400][:44]
    for f in files:
        shutil.copy(UTK / f, d / f)
    os.environ["EDGEAGE_CACHE"] = str(d.parent / "cache")
    return d


def recipe(data_dir, **train):
    return load_recipe("smoke", {"data": {"path": str(data_dir)}, "train": train})


def test_training_steps_on_real_images_write_checkpoints(data_dir, tmp_path):
    res = train(recipe(data_dir), tmp_path / "run", progress=False)
    assert len(res["history"]) == 2
    assert all(torch.isfinite(torch.tensor(h["train_loss"])) for h in res["history"])
    for f in ("last.pt", "best.pt", "metrics.json", "curve.png"):
        assert (tmp_path / "run" / f).is_file(), f
    ck = read_checkpoint(tmp_path / "run" / "last.pt")
    split = ck["manifest"].training.split
    assert len(split["list_hash"]) == 64 and sum(split["sizes"].values()) == 44
    model, manifest = load_model(tmp_path / "run" / "best.pt")
    start = load_model(tmp_path / "run" / "best.pt")[0]
    assert manifest.crop.policy == "detect"
    # training changed the weights away from the initialisation
    from edgeage.models import create
    init = create("mgpnet-t", widths=(8, 16, 16, 32), depths=(1, 1, 1, 1)).state_dict()
    assert any(not torch.equal(init[k], v) for k, v in start.state_dict().items() if v.is_floating_point())


def test_resume_after_interruption_equals_uninterrupted_run(data_dir, tmp_path):
    r = recipe(data_dir)
    train(r, tmp_path / "straight", progress=False)
    train(r, tmp_path / "killed", progress=False, stop_after=1)
    assert read_checkpoint(tmp_path / "killed" / "last.pt")["train_state"]["epoch"] == 1
    train(r, tmp_path / "killed", progress=False, resume=True)
    a = read_checkpoint(tmp_path / "straight" / "last.pt")
    b = read_checkpoint(tmp_path / "killed" / "last.pt")
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k
    assert a["train_state"]["history"][-1]["train_loss"] == b["train_state"]["history"][-1]["train_loss"]


def test_loader_workers_reproduce_the_in_process_augmentation(data_dir, tmp_path):
    """Augmentation is a function of (seed, epoch, image): with loader workers the weights must
    equal those trained without (workers that missed set_epoch would repeat epoch 1's views)."""
    a = train(recipe(data_dir, num_workers=0), tmp_path / "w0", progress=False)
    b = train(recipe(data_dir, num_workers=1), tmp_path / "w1", progress=False)
    assert a["history"][-1]["train_loss"] == b["history"][-1]["train_loss"]
    sa = read_checkpoint(tmp_path / "w0" / "last.pt")["state_dict"]
    sb = read_checkpoint(tmp_path / "w1" / "last.pt")["state_dict"]
    assert all(torch.equal(v, sb[k]) for k, v in sa.items())


def test_clean_view_distillation_from_a_teacher_ensemble(data_dir, tmp_path):
    import numpy as np

    from edgeage.preprocess import Normalize, model_input
    from edgeage.train.loop import load_data, clean_teacher_targets

    train(recipe(data_dir), tmp_path / "t1", progress=False)
    train(recipe(data_dir, seed=1), tmp_path / "t2", progress=False)
    teachers = [str(tmp_path / "t1" / "best.pt"), str(tmp_path / "t2" / "best.pt")]
    r = recipe(data_dir).replace(distill=dict(teacher=teachers, mode="clean", alpha=0.7, temperature=2.0))
    res = train(r, tmp_path / "student", progress=False)
    assert all(np.isfinite(h["train_loss"]) for h in res["history"])
    cache = tmp_path / "student" / "teacher_targets.npz"
    probs = np.load(cache)["probs"]
    # the targets are the mean over both teachers and both mirror views of softmax(logits / T)
    prep, parts, _ = load_data(r, False)
    x = model_input(prep.crops[parts["train"]], Normalize(input_size=64))
    want = 0
    for t in teachers:
        m = load_model(t)[0]
        with torch.no_grad():
            want = want + sum(torch.softmax(m(v) / 2.0, 1) for v in (x, x.flip(3))) / 4
    assert probs.shape == tuple(want.shape)
    assert np.allclose(probs, want.numpy(), atol=1e-5)
    assert np.allclose(probs.sum(1), 1.0, atol=1e-5)
    # cached: a second call reads the file instead of running the teachers again
    mtime = cache.stat().st_mtime_ns
    again = clean_teacher_targets(teachers, prep, parts["train"], load_model(teachers[0])[0].head.spec,
                                  2.0, torch.device("cpu"), cache, False, views=2)
    assert cache.stat().st_mtime_ns == mtime and np.array_equal(again, probs)
    ck = read_checkpoint(tmp_path / "student" / "best.pt")
    assert ck["manifest"].training.recipe["distill"]["teacher"] == teachers
    # a teacher that reads another crop than the student's (margin 1 vs a margin-2 context crop)
    # would score faces it never saw: one clear error naming the teacher
    from edgeage.utils import EdgeAgeError

    r2 = recipe(data_dir).replace(data={"crop_margin": 2.0}, distill=dict(teacher=teachers[:1], mode="clean"))
    with pytest.raises(EdgeAgeError, match=r"t1/best\.pt: it reads crops at margin 1\.0.*margin 2\.0"):
        train(r2, tmp_path / "context-student", progress=False)


def test_online_ensemble_teaches_from_the_students_own_view(data_dir, tmp_path):
    """[distill] mode = "online" with an ensemble: every step the teachers read the student's own
    augmented batch, each resized to its input size, and its mirror; the target is the mean of
    their softened distributions. With [train] mixup the batch is mixed first (the teachers see
    the mixed faces), and the run still resumes exactly."""
    import numpy as np

    from edgeage.preprocess import Normalize, model_input
    from edgeage.train.loop import OnlineEnsemble, load_data
    from edgeage.utils import EdgeAgeError

    train(recipe(data_dir), tmp_path / "t64", progress=False)
    r48 = recipe(data_dir, seed=1)
    train(r48.replace(model={**r48.model, "input_size": 48}), tmp_path / "t48", progress=False)
    teachers = [str(tmp_path / "t64" / "best.pt"), str(tmp_path / "t48" / "best.pt")]
    prep, parts, _ = load_data(recipe(data_dir), False)
    spec = load_model(teachers[0])[0].head.spec
    ens = OnlineEnsemble(teachers, prep, spec, 2, 64, torch.device("cpu"))
    x = model_input(prep.crops[parts["train"]], Normalize(input_size=64))
    got = ens.probs(x, 2.0)
    want = 0
    for t, size in zip(teachers, (64, 48)):
        m = load_model(t)[0].eval()
        xt = x if size == 64 else torch.nn.functional.interpolate(x, size=(48, 48), mode="bilinear",
                                                                  antialias=True, align_corners=False)
        with torch.no_grad():
            want = want + sum(torch.softmax(m(v) / 2.0, 1) for v in (xt, xt.flip(3))) / 4
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.allclose(got.sum(1), torch.ones(len(x)), atol=1e-5)
    r = recipe(data_dir, mixup=0.4).replace(distill=dict(teacher=teachers, mode="online", alpha=0.7))
    straight = train(r, tmp_path / "student", progress=False)
    assert all(np.isfinite(h["train_loss"]) for h in straight["history"])
    train(r, tmp_path / "killed", progress=False, stop_after=1)
    train(r, tmp_path / "killed", progress=False, resume=True)
    a = read_checkpoint(tmp_path / "student" / "last.pt")["state_dict"]
    b = read_checkpoint(tmp_path / "killed" / "last.pt")["state_dict"]
    assert all(torch.equal(v, b[k]) for k, v in a.items())
    # mixup changes what is learnt: the same run without it ends elsewhere
    train(recipe(data_dir).replace(distill=dict(teacher=teachers, mode="online", alpha=0.7)),
          tmp_path / "plain", progress=False)
    c = read_checkpoint(tmp_path / "plain" / "last.pt")["state_dict"]
    assert any(not torch.equal(v, c[k]) for k, v in a.items() if v.is_floating_point())
    # an online ensemble teacher must read the student's crop, as in clean mode: one error, nothing written
    r2 = recipe(data_dir).replace(data={"crop_margin": 2.0}, distill=dict(teacher=teachers, mode="online"))
    with pytest.raises(EdgeAgeError, match=r"t64/best\.pt: it reads crops at margin 1\.0.*mode = 'online'"):
        train(r2, tmp_path / "context-student", progress=False)


def test_an_undegraded_teacher_view_reads_the_face_before_degradation(data_dir, tmp_path):
    """[distill] teacher_view = "undegraded": the loader also returns each crop after its jitter and
    flip but before degradation, grey and erasing; the student's own view is unchanged, and the
    online teacher reads the other one (so the run ends elsewhere). It is an online
    teacher's option: with mode "clean" or no teacher it is one error, and nothing is written."""
    import numpy as np

    from edgeage.data import load_image
    from edgeage.train.loop import AugmentedFaces, geometry
    from edgeage.utils import EdgeAgeError

    crops = np.stack([load_image(p)[:96, :96] for p in sorted(data_dir.iterdir())[:16]])
    r = load_recipe("smoke", {"data": {"path": str(data_dir)}, "train": {"grayscale": 0.5},
                              "degrade": {"p": 0.0, "op_p": {"downsample": 1.0}, "min_scale": 0.1}})
    both = AugmentedFaces(crops, np.zeros(16), np.arange(16), r.train, r.degrade, 0, True, undegraded=True)
    plain = AugmentedFaces(crops, np.zeros(16), np.arange(16), r.train, r.degrade, 0, True)
    for i in range(16):
        student, _, _, teacher = both[i]
        assert torch.equal(student, plain[i][0])
        assert np.array_equal(teacher.numpy(), geometry(crops[i], np.random.default_rng([0, 0, i]), r.train))
        assert not torch.equal(student, teacher)  # every crop was down-sampled for the student only

    train(recipe(data_dir), tmp_path / "t", progress=False)
    teacher = str(tmp_path / "t" / "best.pt")
    base = r.replace(distill=dict(teacher=teacher, mode="online", alpha=0.7, views=1))
    und = base.replace(distill=dict(teacher_view="undegraded"))
    train(und, tmp_path / "und", progress=False)
    train(base, tmp_path / "own", progress=False)
    a, c = (read_checkpoint(tmp_path / d / "last.pt")["state_dict"] for d in ("und", "own"))
    assert any(not torch.equal(v, c[k]) for k, v in a.items() if v.is_floating_point())
    with pytest.raises(EdgeAgeError, match=r"teacher_view = 'undegraded'.*set mode = 'online'"):
        und.replace(distill=dict(mode="clean"))
    with pytest.raises(EdgeAgeError, match=r"teacher_view = 'undegraded'.*has none"):
        train(r.replace(distill=dict(teacher_view="undegraded")), tmp_path / "none", progress=False)
    assert not (tmp_path / "none").exists()


def test_mixup_draw_mixes_a_shuffle_of_the_batch():
    from edgeage.train.loop import mixup_draw

    assert mixup_draw(0.0, 8, "cpu") == (1.0, None)
    assert mixup_draw(0.4, 1, "cpu") == (1.0, None)  # nothing to mix a single face with
    torch.manual_seed(0)
    draws = [mixup_draw(0.4, 8, "cpu") for _ in range(50)]
    assert all(0.0 <= lam <= 1.0 for lam, _ in draws)
    assert all(sorted(perm.tolist()) == list(range(8)) for _, perm in draws)
    assert len({round(lam, 6) for lam, _ in draws}) > 40  # a fresh weight every step


def test_age_balance_weights_favour_rare_ages():
    from edgeage.train.loop import age_balance_weights

    ages = np.array([20.0] * 8 + [70.0] * 2 + [np.nan])
    assert np.array_equal(age_balance_weights(ages, 0.0), np.ones(11))
    w = age_balance_weights(ages, 0.5)
    assert w.mean() == pytest.approx(1.0)
    assert w[8] / w[0] == pytest.approx(2.0, rel=1e-3)  # sqrt(8 / 2): the ages lie far apart
    assert w[10] == pytest.approx(w[:10].mean())  # a face without an age weighs the mean
    w1 = age_balance_weights(ages, 1.0)
    assert w1[:8].sum() == pytest.approx(w1[8:10].sum(), rel=1e-3)  # beta 1: each age as often


def test_balanced_sampler_replays_an_epoch_and_splits_it_between_processes():
    from edgeage.train.loop import BalancedSampler

    w = np.array([1.0] * 90 + [9.0] * 10)
    s = BalancedSampler(w, seed=3)
    s.set_epoch(2)
    a = list(s)
    assert len(a) == len(s) == 100 and a == list(s)  # the same draws again (--resume)
    s.set_epoch(3)
    assert list(s) != a
    counts = np.zeros(100)
    for e in range(200):
        s.set_epoch(e)
        np.add.at(counts, list(s), 1)
    assert counts[90:].sum() / counts.sum() == pytest.approx(0.5, abs=0.02)  # weights 90 : 90
    ranks = [BalancedSampler(w, num_replicas=2, rank=r, seed=3) for r in (0, 1)]
    for r in ranks:
        r.set_epoch(2)
    got = [list(r) for r in ranks]
    assert [len(g) for g in got] == [50, 50] and sorted(got[0] + got[1]) == sorted(a)


def test_age_balanced_training_resumes_exactly(data_dir, tmp_path):
    r = recipe(data_dir, age_balance=0.5)
    train(r, tmp_path / "straight", progress=False)
    train(r, tmp_path / "killed", progress=False, stop_after=1)
    train(r, tmp_path / "killed", progress=False, resume=True)
    a = read_checkpoint(tmp_path / "straight" / "last.pt")["state_dict"]
    b = read_checkpoint(tmp_path / "killed" / "last.pt")["state_dict"]
    assert all(torch.equal(v, b[k]) for k, v in a.items())
    train(recipe(data_dir), tmp_path / "plain", progress=False)
    plain = read_checkpoint(tmp_path / "plain" / "last.pt")["state_dict"]
    assert any(not torch.equal(v, plain[k]) for k, v in a.items() if v.is_floating_point())
    with pytest.raises(Exception, match="age_balance"):
        recipe(data_dir, age_balance=1.5)


def test_init_skip_puts_a_new_head_on_trained_weights(data_dir, tmp_path):
    """[train] init + init_skip = "head.": a DRF head on a trained sord model's backbone (the
    families' drf-mgpnet-xs recipe). The backbone starts from the trained weights, the head fresh;
    without init_skip the mismatch is one clear error, nothing written."""
    from edgeage.utils import EdgeAgeError

    train(recipe(data_dir), tmp_path / "sord", progress=False)
    trained = load_model(tmp_path / "sord" / "best.pt")[0].state_dict()
    r = recipe(data_dir, epochs=1, lr=1e-12, ema_decay=0.0, init=str(tmp_path / "sord" / "best.pt"),
               init_skip="head.")
    r = r.replace(model={**r.model, "head": "drf"})
    train(r, tmp_path / "drf", progress=False)
    got = load_model(tmp_path / "drf" / "last.pt")[0]
    assert got.head.kind == "drf"
    convs = [k for k, v in trained.items() if k.endswith("conv1.weight") and not k.startswith("head.")]
    assert convs and all(torch.allclose(got.state_dict()[k], trained[k], atol=1e-6) for k in convs)
    r = r.replace(train={"init_skip": ""})
    with pytest.raises(EdgeAgeError, match="weights do not fit model 'mgpnet-t'"):
        train(r, tmp_path / "bad", progress=False)
    assert not (tmp_path / "bad").exists()


def test_mivolo_needs_its_context_margin_as_the_crop_margin(data_dir, tmp_path):
    from edgeage.utils import EdgeAgeError

    r = recipe(data_dir).replace(model={"name": "mivolo", "dims": [24, 32], "heads": [2, 2], "depths": [1, 1, 1]})
    with pytest.raises(EdgeAgeError, match=r"set \[data\] crop_margin = 2"):
        train(r, tmp_path / "m", progress=False)
    assert not (tmp_path / "m").exists()


def test_online_teacher_model_is_what_alpha_one_distils(data_dir, tmp_path):
    """train(teacher_model=...) (QAT distils from the float model in memory): with alpha = 1 the
    student learns the teacher's age distribution, and ends closer to it (KL on the training
    crops) than the same run trained on the labels (alpha = 0)."""
    from edgeage.preprocess import Normalize, model_input
    from edgeage.train.loop import load_data
    from edgeage.utils import EdgeAgeError

    train(recipe(data_dir, epochs=3), tmp_path / "t", progress=False)
    teacher = load_model(tmp_path / "t" / "best.pt")[0]
    runs = {}
    for alpha in (0.0, 1.0):
        r = recipe(data_dir, seed=1, lr=1e-2, epochs=4, ema_decay=0.0)
        r = r.replace(distill=dict(alpha=alpha, temperature=1.0))
        train(r, tmp_path / f"a{alpha}", progress=False, teacher_model=teacher)
        runs[alpha] = load_model(tmp_path / f"a{alpha}" / "last.pt")[0].eval()
    prep, parts, _ = load_data(recipe(data_dir), False)
    x = model_input(prep.crops[parts["train"]], Normalize(input_size=64))
    with torch.no_grad():
        p_t = torch.softmax(teacher(x), 1)
        kl = {a: float(torch.nn.functional.kl_div(torch.log_softmax(m(x), 1), p_t, reduction="batchmean"))
              for a, m in runs.items()}
    assert kl[1.0] < 0.5 * kl[0.0], kl
    r = recipe(data_dir).replace(distill={"teacher": str(tmp_path / "t" / "best.pt")})
    with pytest.raises(EdgeAgeError, match="teacher_model"):
        train(r, tmp_path / "both", progress=False, teacher_model=teacher)


def test_resume_refuses_a_different_recipe(data_dir, tmp_path):
    train(recipe(data_dir), tmp_path / "run", progress=False, stop_after=1)
    from edgeage.utils import EdgeAgeError
    with pytest.raises(EdgeAgeError, match="different recipe"):
        train(recipe(data_dir, lr=0.5), tmp_path / "run", progress=False, resume=True)


def test_ddp_two_processes_on_cpu_gloo(data_dir, tmp_path):
    out = tmp_path / "ddp"
    from edgeage.utils import python_module_cmd

    # the launcher and the workers it starts import the installed package, not a folder named
    # edgeage in the working directory: each worker's command is given whole (--no-python), as the
    # same isolated `python -P -m edgeage.cli` the launcher itself runs as
    worker = python_module_cmd("edgeage.cli", "train", "--recipe", "smoke", "--data", data_dir, "--out", out)
    cmd = python_module_cmd("torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
                            "--no-python", *worker)
    p = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    hist = json.loads((out / "metrics.json").read_text())["history"]
    assert len(hist) == 2
    ck = read_checkpoint(out / "last.pt")
    assert ck["train_state"]["epoch"] == 2


def run_cli(*args):
    from edgeage.utils import python_module_cmd

    return subprocess.run(python_module_cmd("edgeage.cli", *args), capture_output=True, text=True, env=ENV,
                          timeout=600)


def test_eval_json_prints_exactly_one_object(data_dir, tmp_path):
    train(recipe(data_dir), tmp_path / "run", progress=False)
    p = run_cli("eval", "--model", str(tmp_path / "run" / "best.pt"), "--data", str(data_dir),
                "--json", "--out", str(tmp_path / "ev"))
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["n"] == 44 and res["mae"] > 0 and 0 <= res["cs5"] <= 1
    assert {"per_decade", "faces_not_found"} <= set(res)
    for f in ("eval.json", "eval.md", "predictions.csv", "error_by_age.png"):
        assert (tmp_path / "ev" / f).is_file()


def test_shipped_default_model_on_the_test_split():
    """The shipped model, on (part of) the test split it records: the issue's bar is 6.5."""
    _, manifest = load_model(None)
    rec = manifest.training.split
    from edgeage.data import split
    names = sorted(os.listdir(UTK))
    test = [names[i] for i in split(names, rec["seed"], rec["val"], rec["test"])["test"]][::4]
    csv = Path(os.environ["EDGEAGE_CACHE"]).parent / "test_split.csv"
    csv.write_text("path,age\n" + "".join(f"{UTK / n},{parse_utk_name(n)}\n" for n in test))
    p = run_cli("eval", "--data", str(csv), "--json")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["n"] == len(test) and res["mae"] <= 6.5, res


def test_predict_finds_the_face_and_annotates(tmp_path):
    img = UTK / sorted(os.listdir(UTK))[1234]
    p = run_cli("predict", str(img), "--json", "--annotate", str(tmp_path / "ann"))
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)["images"][0]
    assert len(res["faces"]) == 1 and 0 < res["faces"][0]["age"] < 101
    assert Path(res["annotated"]).is_file()
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    p = run_cli("predict", str(bad))
    assert p.returncode != 0 and "bad.jpg" in p.stderr and "Traceback" not in p.stderr


def test_recipes_trained_together_equal_each_trained_alone(data_dir, tmp_path):
    """train --recipe A --recipe B: one augmented stream, each model its own step. A trained beside
    B (another lr and input size) ends with exactly A's weights trained alone (no dropout: its
    masks come from the shared torch RNG)."""
    from edgeage.train.multi import train_together
    from edgeage.utils import EdgeAgeError

    a = load_recipe("smoke", {"data": {"path": str(data_dir)}, "model": {"dropout": 0.0}})
    b = load_recipe("smoke", {"data": {"path": str(data_dir)}, "model": {"dropout": 0.0, "input_size": 48},
                              "train": {"lr": 3e-3}})
    b = b.replace(name="smoke-48")
    train(a, tmp_path / "alone", progress=False)
    res = train_together([a, b], [tmp_path / "a", tmp_path / "b"], progress=False, log=lambda *_: None)
    assert set(res) == {"smoke", "smoke-48"} and all(v["epochs_run"] == 2 for v in res.values())
    alone = read_checkpoint(tmp_path / "alone" / "last.pt")["state_dict"]
    together = read_checkpoint(tmp_path / "a" / "last.pt")["state_dict"]
    assert all(torch.equal(v, together[k]) for k, v in alone.items())
    other = read_checkpoint(tmp_path / "b" / "last.pt")
    assert other["manifest"].input_size == 48
    assert any(not torch.equal(v, other["state_dict"][k]) for k, v in together.items() if v.is_floating_point())
    # a time budget sizes the schedule after epoch 1 (a tiny one: the 2-epoch minimum), and the
    # cosine schedule then ends at the budget's last epoch
    logs = []
    res = train_together([a], [tmp_path / "budget"], progress=False, log=logs.append, budget_s=0.01)
    assert res["smoke"]["epochs_run"] == 2
    assert any("second half's pace" in m and "-> 2 epochs" in m for m in logs)
    hist = json.loads((tmp_path / "budget" / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in hist] == [1, 2] and hist[-1]["lr"] == pytest.approx(0.0, abs=1e-9)
    c = load_recipe("smoke", {"data": {"path": str(data_dir)}, "train": {"batch_size": 4}})
    with pytest.raises(EdgeAgeError, match=r"\[train\] batch_size"):
        train_together([a, c], [tmp_path / "x", tmp_path / "y"], progress=False)
    assert not (tmp_path / "x").exists()


def test_grayscale_augmentation_turns_that_share_of_crops_grey(data_dir):
    import numpy as np

    from edgeage.data import load_image
    from edgeage.train.loop import AugmentedFaces

    crops = np.stack([load_image(p)[:96, :96] for p in sorted(data_dir.iterdir())[:40]])
    assert not all(np.array_equal(c[..., 0], c[..., 1]) for c in crops)   # colour photos
    base = {"flip": 0.0, "erasing": 0.0, "jitter": 0.0}

    def greys(share):
        r = load_recipe("smoke", {"data": {"path": str(data_dir)}, "train": {**base, "grayscale": share},
                                  "degrade": {"p": 0.0}})
        ds = AugmentedFaces(crops, np.zeros(len(crops)), np.arange(len(crops)), r.train, r.degrade, 0, True)
        out = [ds[i][0].numpy() for i in range(len(ds))]
        return [bool(np.array_equal(o[..., 0], o[..., 1]) and np.array_equal(o[..., 1], o[..., 2])) for o in out], out

    g, out = greys(1.0)
    assert all(g)
    y = np.rint(crops[0].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))
    assert np.abs(out[0][..., 0].astype(int) - y).max() <= 1
    g, out = greys(0.0)
    assert not any(g) and all(np.array_equal(o, c) for o, c in zip(out, crops))
    g, _ = greys(0.3)
    assert 0 < sum(g) < len(g)
    with pytest.raises(Exception, match="grayscale"):
        load_recipe("smoke", {"train": {"grayscale": 1.5}})


def test_averaging_a_run_with_itself_measures_its_recorded_validation_again(data_dir, tmp_path):
    """edgeage.train.average: the average of a checkpoint with itself is that model, and
    ``revalidate`` reads the recorded recipe's data and split and measures the validation MAE the
    training loop recorded; the manifest names both parents."""
    from edgeage.train.average import average_checkpoints, revalidate

    train(recipe(data_dir), tmp_path / "run", progress=False)
    best = tmp_path / "run" / "best.pt"
    model, manifest = average_checkpoints(best, best, 0.5)
    recorded = read_checkpoint(best)["manifest"].training.val
    again = revalidate(model, manifest).training
    assert again.val["n"] == recorded["n"] > 0
    assert again.val["mae"] == pytest.approx(recorded["mae"], abs=1e-4)
    assert again.averaged_from["alpha"] == 0.5
    assert again.averaged_from["a"]["sha256"] == again.averaged_from["b"]["sha256"] == read_checkpoint(best)["sha256"]


def test_extra_data_joins_the_training_split_only(data_dir, tmp_path):
    """[data] extra / --extra-data: every image of another labelled set is trained on; validation
    and test stay the main set's, so runs with and without it compare. A set holding an image of
    the main set's validation or test split is refused, naming it."""
    import numpy as np

    from edgeage.train.loop import load_data
    from edgeage.utils import EdgeAgeError

    ext = tmp_path / "other"
    ext.mkdir()
    names = sorted(os.listdir(UTK))[200::400][:6]
    for f in names:
        shutil.copy(UTK / f, ext / f"photo_{f}")
    (ext / "labels.csv").write_text("path,age\n" + "".join(f"photo_{f},{parse_utk_name(f)}\n" for f in names))
    base = recipe(data_dir)
    prep0, parts0, rec0 = load_data(base, False)
    prep, parts, rec = load_data(base.replace(data={"extra": [str(ext / "labels.csv")]}), False)
    n0 = len(prep0.names)
    assert np.array_equal(parts["val"], parts0["val"]) and np.array_equal(parts["test"], parts0["test"])
    assert list(parts["train"]) == list(parts0["train"]) + list(range(n0, n0 + 6))
    assert prep.names[n0:] == [f"photo_{f}" for f in names] and len(prep.crops) == n0 + 6
    assert [float(a) for a in prep.ages[n0:]] == [float(parse_utk_name(f)) for f in names]
    assert rec["list_hash"] == rec0["list_hash"] and rec["val_hash"] == rec0["val_hash"]
    assert rec["train_hash"] != rec0["train_hash"] and rec["extra"][0]["n"] == 6

    held = prep0.names[parts0["test"][0]]  # a test face, under its own name, in the extra set
    shutil.copy(data_dir / held, ext / held)
    (ext / "leak.csv").write_text(f"path,age\n{held},{parse_utk_name(held)}\n")
    with pytest.raises(EdgeAgeError, match=f"leak.csv.*test split.*{held}"):
        load_data(base.replace(data={"extra": [str(ext / "leak.csv")]}), False)
    shutil.copy(data_dir / held, ext / "renamed.jpg")  # the same photo under another name
    (ext / "renamed.csv").write_text(f"path,age\nrenamed.jpg,{parse_utk_name(held)}\n")
    with pytest.raises(EdgeAgeError, match=f"renamed.csv.*test split.*renamed.jpg = {held}"):
        load_data(base.replace(data={"extra": [str(ext / "renamed.csv")]}), False)

    out = tmp_path / "run"
    from edgeage.utils import python_module_cmd

    cmd = python_module_cmd("edgeage.cli", "train", "--recipe", "smoke", "--data", data_dir,
                            "--extra-data", ext / "labels.csv", "--epochs", "1", "--out", out)
    p = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    split = read_checkpoint(out / "last.pt")["manifest"].training.split
    assert split["sizes"]["train"] == len(parts0["train"]) + 6 and split["extra"][0]["path"].endswith("labels.csv")


def test_unlabelled_faces_train_through_the_teacher_only(data_dir, tmp_path):
    """[data] unlabelled / --unlabelled-data: faces without ages (a folder with sub-folders, any
    names) join the training split with NaN ages; the head's loss skips them and only the
    teacher's targets train on them. Without a teacher it is one error; a cache prepared
    --unlabelled cannot be a labelled set, nor be scored."""
    from types import SimpleNamespace

    import numpy as np

    from edgeage.data import discover, load_prepared, prepare
    from edgeage.metrics import summary
    from edgeage.train.loop import Run, load_data
    from edgeage.train.losses import make_loss
    from edgeage.utils import EdgeAgeError

    faces = tmp_path / "faces"
    for k, f in enumerate(sorted(os.listdir(UTK))[200::400][:6]):
        (faces / f"person_{k % 2}").mkdir(parents=True, exist_ok=True)
        shutil.copy(UTK / f, faces / f"person_{k % 2}" / f"shot_{k}.jpg")   # no age in the names
    base = recipe(data_dir)
    with pytest.raises(EdgeAgeError, match=r"\[data\] unlabelled.*has none: set \[distill\] teacher"):
        base.replace(data={"unlabelled": [str(faces)]})

    train(base, tmp_path / "t", progress=False)
    teach = base.replace(distill=dict(teacher=str(tmp_path / "t" / "best.pt"), mode="online", alpha=0.7, views=1))
    prep0, parts0, _ = load_data(teach, False)
    r = teach.replace(data={"unlabelled": [str(faces)]})
    prep, parts, rec = load_data(r, False)
    n0 = len(prep0.names)
    assert np.array_equal(parts["val"], parts0["val"]) and np.array_equal(parts["test"], parts0["test"])
    assert list(parts["train"]) == list(parts0["train"]) + list(range(n0, n0 + 6))
    assert sorted(prep.names[n0:]) == [f"shot_{k}.jpg" for k in range(6)] and np.isnan(prep.ages[n0:]).all()
    assert not np.isnan(prep.ages[:n0]).any() and rec["extra"] == [{**rec["extra"][0], "labelled": False, "n": 6}]

    # the head's loss counts the faces with an age only, each weighed as in an all-labelled batch
    student = load_model(tmp_path / "t" / "best.pt")[0]
    fn = make_loss(student.head.spec, student.head.kind)
    run = SimpleNamespace(loss_fn=fn, model=student)
    outp = student(torch.randn(4, 3, 64, 64))
    ages = torch.tensor([20.0, float("nan"), 41.0, float("nan")])
    got = Run.label_loss(run, outp, ages)
    assert torch.allclose(got, fn(outp[[0, 2]], ages[[0, 2]]) * 0.5)
    none = Run.label_loss(run, outp, torch.full((4,), float("nan")))
    assert float(none.detach()) == 0.0 and none.requires_grad
    assert torch.equal(Run.label_loss(run, outp, ages.nan_to_num(30.0)), fn(outp, ages.nan_to_num(30.0)))

    res = train(r, tmp_path / "with", progress=False)
    assert all(np.isfinite(h["train_loss"]) for h in res["history"])
    split = read_checkpoint(tmp_path / "with" / "last.pt")["manifest"].training.split
    assert split["sizes"]["train"] == len(parts0["train"]) + 6 and split["extra"][0]["labelled"] is False
    train(teach, tmp_path / "without", progress=False)
    a, c = (read_checkpoint(tmp_path / d / "last.pt")["state_dict"] for d in ("with", "without"))
    assert any(not torch.equal(v, c[k]) for k, v in a.items() if v.is_floating_point())

    cache = prepare(faces, prep.crop, out=tmp_path / "cache", progress=False, labelled=False)
    again = load_prepared(tmp_path / "cache")
    assert np.isnan(again.ages).all() and sorted(again.names) == sorted(cache.names)
    with pytest.raises(EdgeAgeError, match=r"6 of these 6 faces have no age"):
        summary(np.zeros(6), again.ages)
    with pytest.raises(EdgeAgeError, match=r"cache: 6 of its faces have no age.*--unlabelled-data"):
        load_data(teach.replace(data={"extra": [str(tmp_path / "cache")]}), False)
    # a CSV's path column; a missing file stops it, or is skipped and listed with skip_bad
    (faces / "list.csv").write_text("path\nperson_0/shot_0.jpg\nperson_1/gone.jpg\n")
    with pytest.raises(EdgeAgeError, match=r"gone\.jpg: file not found \(listed in .*list\.csv:3\)"):
        discover(faces / "list.csv", labelled=False)
    samples, skipped = discover(faces / "list.csv", skip_bad=True, labelled=False)
    assert [Path(x.path).name for x in samples] == ["shot_0.jpg"] and len(skipped) == 1
    held = prep0.names[parts0["val"][0]]  # a validation face among the unlabelled ones: refused, naming the key
    shutil.copy(data_dir / held, faces / "person_0" / held)
    with pytest.raises(EdgeAgeError, match=rf"\[data\] unlabelled .*val split.*{held}.*from the unlabelled set"):
        load_data(r, False)


def test_the_recipe_degradation_ranges_reach_the_training_crops(data_dir):
    """[degrade] op_p / min_scale: with p 0 and down-sampling always on, every training crop is
    down-sampled, some far below the default's 24 px of 96; an unknown op is one error naming it."""
    import numpy as np

    from edgeage.data import load_image
    from edgeage.train.loop import AugmentedFaces

    crops = np.stack([load_image(p)[:96, :96] for p in sorted(data_dir.iterdir())[:24]])
    base = {"flip": 0.0, "erasing": 0.0, "jitter": 0.0}
    r = load_recipe("smoke", {"data": {"path": str(data_dir)}, "train": base,
                              "degrade": {"p": 0.0, "op_p": {"downsample": 1.0}, "min_scale": 0.08}})
    ds = AugmentedFaces(crops, np.zeros(len(crops)), np.arange(len(crops)), r.train, r.degrade, 0, True)
    ops = []
    for i in range(len(ds)):
        assert not np.array_equal(ds[i][0].numpy(), crops[i])
        ops.append(ds.degrader.last_ops)
    assert ops == [["downsample"]] * len(ds)
    with pytest.raises(Exception, match=r"\[degrade\] op_p"):
        load_recipe("smoke", {"degrade": {"op_p": {"sharpen": 0.5}}})
