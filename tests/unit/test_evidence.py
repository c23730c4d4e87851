"""bench/runs.toml indexes the committed runs (issue 27: keep only the runs the docs cite, each
with the command that made it): every top-level entry of bench/ has a table there with its
command, and at least one page of README.md or docs/ cites it. Unit tier: reads text only."""
from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
INDEX = BENCH / "runs.toml"


def committed_entries() -> set[str]:
    """Top-level names under bench/ that git tracks (the folder listing outside a git checkout)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--", "bench"], cwd=ROOT, capture_output=True,
                             check=True).stdout.decode()
    except (OSError, subprocess.CalledProcessError):
        out = ""
    names = {p.split("/")[1] for p in out.split("\0") if p.count("/") >= 1}
    if not names:
        names = {p.name for p in BENCH.iterdir()}
    return names - {"runs.toml"}


def cites(text: str, name: str) -> bool:
    """`bench/<name>` as a whole name: bench/edge-v2-g32 does not cite bench/edge-v2."""
    return re.search(r"bench/" + re.escape(name) + r"(?![-\w.])", text) is not None


def is_doc(rel: str) -> bool:
    return rel == "README.md" or rel.startswith("docs/")


@pytest.fixture(scope="module")
def runs() -> dict:
    with INDEX.open("rb") as f:
        return tomllib.load(f)


def test_every_committed_entry_has_a_table(runs):
    missing = sorted(committed_entries() - set(runs))
    assert not missing, (
        f"bench/ entries without a table in bench/runs.toml: {missing}. Add [\"<name>\"] with the "
        "command that made it, a `what` line and the pages that cite it; or, if no page cites "
        "it, remove it (git rm -r bench/<name>)")


def test_every_table_names_a_committed_entry(runs):
    entries = committed_entries()
    stale = sorted(n for n in runs if n not in entries or not (BENCH / n).exists())
    assert not stale, (
        f"bench/runs.toml has tables for entries that are not in bench/ (or not committed): {stale}. "
        "Remove the table, or commit the run")


@pytest.mark.parametrize("name", sorted(committed_entries()))
def test_each_run_has_a_command_and_a_citation(runs, name):
    if name not in runs:
        pytest.skip(f"{name}: no table (test_every_committed_entry_has_a_table says so)")
    run = runs[name]
    cmd = run.get("command")
    cmds = [cmd] if isinstance(cmd, str) else cmd
    hand = run.get("hand_written")
    assert (cmd is None) != (hand is None), (
        f"bench/runs.toml [\"{name}\"]: give either `command` (what made the run) or `hand_written` "
        "(why no command makes it, e.g. a peer's description), not both or neither")
    if hand is not None:
        assert isinstance(hand, str) and hand.strip(), f"bench/runs.toml [\"{name}\"]: say in hand_written why"
    else:
        assert isinstance(cmds, list) and cmds and all(isinstance(c, str) and c.strip() for c in cmds), (
            f"bench/runs.toml [\"{name}\"]: `command` must be a non-empty string or list of strings: "
            "the command the citing page gives beside its numbers (or the script that writes the folder)")
    assert isinstance(run.get("what"), str) and run["what"].strip(), (
        f"bench/runs.toml [\"{name}\"]: add a one-line `what`")
    cited_by = run.get("cited_by")
    assert isinstance(cited_by, list) and all(isinstance(p, str) for p in cited_by), (
        f"bench/runs.toml [\"{name}\"]: `cited_by` must be a list of paths (README.md or docs/...)")
    for rel in cited_by:
        assert is_doc(rel), (
            f"bench/runs.toml [\"{name}\"]: cited_by lists {rel}; only README.md and files under docs/ "
            "count as citations (the changelog is a log)")
        page = ROOT / rel
        assert page.is_file(), f"bench/runs.toml [\"{name}\"]: cited_by names {rel}, which does not exist"
        assert cites(page.read_text(encoding="utf-8"), name), (
            f"bench/runs.toml [\"{name}\"]: {rel} does not contain `bench/{name}`; remove it from "
            "cited_by, or cite the run there")
    assert cited_by, (
        f"bench/{name} is cited by no page of README.md or docs/: cite it beside the numbers it backs "
        f"and list the page in cited_by, or remove the run (git rm -r bench/{name}) and its table")
