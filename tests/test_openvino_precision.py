"""OpenVINO reduced-precision rows compute in the precision they name, or are refused (real
OpenVINO, no mocks). Which of the two holds is decided by the CPU plugin's own capability list
(OPTIMIZATION_CAPABILITIES), the property the runner's refusal message names."""
from __future__ import annotations

import dataclasses

import json
import re

import pytest

from edgeage.utils import EdgeAgeError

# row -> (INFERENCE_PRECISION_HINT spelling, OPTIMIZATION_CAPABILITIES entry of native compute)
ROWS = {"fp16": ("f16", "FP16"), "bf16": ("bf16", "BF16")}


def cpu_capabilities() -> list[str]:
    import openvino as ov

    return [str(c) for c in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")]


@pytest.mark.parametrize("precision", sorted(ROWS))
def test_reduced_precision_runs_as_named_or_is_refused(precision, exported, tiny_ckpt, face_dir, edgeage_cli):
    from edgeage.targets.runner import load_runner

    named, cap = ROWS[precision]
    caps = cpu_capabilities()
    art = exported("openvino", precision)
    res = edgeage_cli("check", "--artifact", art, "--model", tiny_ckpt, "--data", face_dir, "--runs", 0, "--json")
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    if cap in caps:  # the CPU computes it: the check runs it, in that precision
        r = json.loads(res.stdout)
        rt = r["runtime"]
        assert rt["inference_precision_applied"] == rt["inference_precision_named"] == named, rt
        assert "Convolution" in rt["runtime_op_precisions"][named], rt["runtime_op_precisions"]
        assert r["n"] == len(list(face_dir.iterdir())) and r["age_abs_diff_max"] is not None
        assert res.returncode == (0 if r["passed"] else 1)
        assert load_runner(art).info["inference_precision_applied"] == named
    else:  # refused: no numbers, a message naming the row, what ran instead and the CPU's capabilities
        assert res.returncode != 0 and not res.stdout.strip(), res.stdout[:2000]
        msg = res.stderr
        assert f"the {precision} row computes in {named}" in msg, msg
        applied = re.search(r"CPU plugin applied (\w+)", msg)
        assert applied and applied.group(1) != named, msg
        assert f"no {cap}" in msg and "OPTIMIZATION_CAPABILITIES" in msg and "Refusing to report" in msg, msg
        with pytest.raises(EdgeAgeError, match=f"the {precision} row computes in {named}"):
            load_runner(art)


def test_a_hint_other_than_the_row_precision_is_refused(exported):
    """A TOML whose bf16 row asks the plugin for f32 would report f32 numbers as bf16: refused on
    any CPU."""
    from edgeage.targets.runner import load_runner
    from edgeage.targets.spec import load_spec

    spec = load_spec("openvino")
    precision = {**spec.runtime["precision"], "bf16": {"inference_precision_hint": "f32"}}
    bad = dataclasses.replace(spec, runtime={**spec.runtime, "precision": precision})
    with pytest.raises(EdgeAgeError, match=r"bf16 row computes in bf16.*inference_precision_hint is 'f32'"):
        load_runner(exported("openvino", "bf16"), bad)


def test_fp32_row_computes_in_f32(exported):
    from edgeage.targets.runner import load_runner

    info = load_runner(exported("openvino")).info
    assert info["inference_precision_applied"] == info["inference_precision_named"] == "f32", info
    assert set(info["runtime_op_precisions"]) <= {"f32", "i32", "i64"}, info["runtime_op_precisions"]
