"""scripts/import_graph.py (the picture in docs/architecture.md): its layer-level graph of the
current tree has the edges the layering expects and none against it. Unit tier: no drawing."""
from __future__ import annotations

import importlib.util
import subprocess
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ig():
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts" / "import_graph.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def edges(ig):
    return ig.graph()


def test_the_known_edges_exist(ig, edges):
    for edge in [("backends", "core"), ("train", "core"), ("export/artifact", "backends"),
                 ("export/int8", "export/artifact"), ("export/int8", "train"),
                 ("export/conformance", "export/artifact"), ("export/devices", "export/conformance"),
                 ("CLI", "core"), ("CLI", "export/devices"), ("CLI", "train")]:
        assert edges[edge] > 0, edge
    assert all(a != b for a, b in edges) and set(g for e in edges for g in e) == set(ig.ORDER)


def test_no_edge_runs_against_the_layering(ig, edges):
    assert not ig.against_layering(edges), ig.edge_lines(edges)
    export = {"export/artifact", "export/int8", "export/conformance", "export/devices"}
    up = {(a, b) for a, b in edges if a == "core" and b != "models"} | {
        (a, b) for a, b in edges if a in ("backends", "train", "core", "models") and b in export | {"CLI"}} | {
        (a, b) for a, b in edges if a == "export/artifact" and b in export} | {
        (a, b) for a, b in edges if b == "CLI"} | {(a, b) for a, b in edges if a == "backends" and b == "train"}
    assert not up, up


def test_the_check_is_not_vacuous(ig):
    """An upward import is flagged, and a lazy import inside a function is counted."""
    bad = Counter({("backends", "export/conformance"): 1, ("export/artifact", "export/int8"): 2,
                   ("export/conformance", "export/artifact"): 3})
    assert ig.against_layering(bad) == [("backends", "export/conformance"), ("export/artifact", "export/int8")]
    known = {"edgeage.targets.x": "targets/x.py", "edgeage.export.int8.quantize": "export/int8/quantize.py",
             "edgeage.utils": "edgeage/utils.py", "edgeage.export": "export/__init__.py"}
    src = ("import os\nfrom ..utils import EdgeAgeError\n\ndef f():\n"
           "    from edgeage.export.int8 import quantize\n    import edgeage\n")
    stmts = ig.statements("edgeage.targets.x", "targets/x.py", src, known)
    assert stmts == [{"edgeage.utils"}, {"edgeage.export.int8.quantize"}], stmts
    assert [ig.group(m) for m in ("edgeage.cli", "edgeage.cli_options", "edgeage.api", "edgeage.export",
                                  "edgeage.export.check", "edgeage.export.quantize_cli", "edgeage.models.heads",
                                  "edgeage.targets.onnx.runner", "edgeage.train.loop", "edgeage.pipeline")] == [
        "CLI", "CLI", "CLI", "export/artifact", "export/conformance", "CLI", "models", "backends", "train", "core"]


def test_a_revision_is_read_without_checking_it_out(ig, edges):
    """The picture before the export/ split (its flat files mapped to their concerns) reads git."""
    rev = "55c000d"
    if subprocess.run(["git", "cat-file", "-e", f"{rev}^{{commit}}"], cwd=ROOT, capture_output=True).returncode:
        pytest.skip(f"{rev} is not in this clone")
    before = ig.graph(rev)
    assert before[("export/conformance", "export/artifact")] > 0 and not ig.against_layering(before)
    assert before != edges
