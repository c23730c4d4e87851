"""Draw the package's import structure, layer by layer, from the code's own imports.

Every ``import`` / ``from ... import`` statement of the installed package's sources (lazy imports
inside functions included; parsed with ``ast``, nothing is imported) is mapped from the module
that makes it to the module it names, and both to their layer / sub-package (the mapping of
``tests/unit/test_architecture.py``, with ``edgeage/models`` drawn apart from the rest of the
core). An edge A -> B means "A imports B", labelled with the number of import statements.
Imports of the bare ``edgeage`` package (its ``__init__``) and imports by name (the CLI's
``STAGE_COMMANDS``, a target's ``exporter`` / ``runner`` strings) are not import statements and
are not drawn.

    python scripts/import_graph.py --out docs/img/imports-after.png
    python scripts/import_graph.py --rev 55c000d --out docs/img/imports-before.png

``--rev`` reads the tree at a git revision (``git ls-tree`` / ``git cat-file``; nothing is
checked out). Before export/ was split into sub-packages its flat files are mapped to the
concern they became (``FLAT_EXPORT``). The edge list is printed as text either way.
"""
from __future__ import annotations

import argparse
import ast
import subprocess
import sys
import tomllib
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CORE, MODELS, BACKEND, TRAIN, CLI = "core", "models", "backends", "train", "CLI"
EXPORT = ["export/artifact", "export/int8", "export/conformance", "export/devices"]
# left to right: each group may import those before it (see ALLOWED)
ORDER = [CORE, MODELS, BACKEND, TRAIN, *EXPORT, CLI]
LABELS = {CORE: "core\n(edgeage/)", MODELS: "models\n(edgeage/models)", BACKEND: "backends\n(targets/)",
          TRAIN: "train/", **{e: e.replace("/", "/\n") for e in EXPORT},
          CLI: "CLI\n(cli.py, cli_options,\ncommand modules, api)"}
# what each group may import besides itself (test_architecture.py's ALLOWED; models is core)
ALLOWED = {CORE: {MODELS}, MODELS: {CORE}, BACKEND: {CORE, MODELS}, TRAIN: {CORE, MODELS},
           **{sub: {CORE, MODELS, BACKEND, *EXPORT[:i]} | ({TRAIN} if i >= 1 else set())
              for i, sub in enumerate(EXPORT)},
           CLI: {CORE, MODELS, BACKEND, TRAIN, *EXPORT}}
# export/ before its split (e.g. 55c000d): flat file -> the sub-package its code moved to
FLAT_EXPORT = {"artifact": "artifact", "calibration": "artifact", "package": "artifact", "detector": "artifact",
               "writer": "artifact",
               "quantize": "int8", "accuracy": "int8",
               "check": "conformance", "latency": "conformance", "localize": "conformance", "peer": "conformance",
               "pipeline_bench": "conformance", "report": "conformance",
               "devices": "devices", "android": "devices", "qemu": "devices", "bundle": "devices",
               "python_side": "devices"}
OPTIONS = "edgeage.cli_options"


class Tree:
    """The package's sources in the working tree (rev None) or at a git revision."""

    def __init__(self, rev: str | None = None, root: Path = ROOT):
        self.rev, self.root = rev, root

    def read(self, path: str) -> str:
        if self.rev is None:
            return (self.root / path).read_text()
        return self._git("show", f"{self.rev}:{path}")

    def _git(self, *args: str) -> str:
        return subprocess.run(["git", *args], cwd=self.root, check=True, capture_output=True, text=True).stdout

    def package_dirs(self) -> dict[str, str]:
        dirs = tomllib.loads(self.read("pyproject.toml"))["tool"]["setuptools"].get("package-dir", {})
        return {pkg: d for pkg, d in dirs.items() if pkg.startswith("edgeage")} or {"edgeage": "edgeage"}

    def files(self, folder: str) -> list[str]:
        if self.rev is None:
            return sorted(p.relative_to(self.root).as_posix() for p in (self.root / folder).rglob("*.py"))
        out = self._git("ls-tree", "-r", "--name-only", self.rev, "--", folder)
        return sorted(p for p in out.splitlines() if p.endswith(".py"))

    def sources(self, paths: list[str]) -> dict[str, str]:
        if self.rev is None:
            return {p: self.read(p) for p in paths}
        # one git process for all files
        data = subprocess.run(["git", "cat-file", "--batch"], cwd=self.root, check=True, capture_output=True,
                              input="".join(f"{self.rev}:{p}\n" for p in paths).encode()).stdout
        out, pos = {}, 0
        for p in paths:
            header_end = data.index(b"\n", pos)
            size = int(data[pos:header_end].split()[2])
            out[p] = data[header_end + 1:header_end + 1 + size].decode()
            pos = header_end + 1 + size + 1
        return out


def modules(tree: Tree) -> dict[str, str]:
    """Module name -> its path in the tree (test_architecture.py's ``modules``)."""
    out = {}
    for pkg, folder in tree.package_dirs().items():
        if "." in pkg and folder.startswith(tree.package_dirs().get("edgeage", "edgeage") + "/"):
            continue  # a sub-package inside edgeage/ is found by walking edgeage/
        for f in tree.files(folder):
            parts = [p for p in Path(f).relative_to(folder).with_suffix("").parts if p != "__init__"]
            if pkg == "edgeage" and parts and parts[0] == "assets":
                continue
            if pkg == "edgeage" and parts and f"edgeage.{parts[0]}" in tree.package_dirs():
                continue
            out[".".join([pkg, *parts])] = f
    return out


def is_command_module(name: str) -> bool:
    last = name.rsplit(".", 1)[-1]
    return last == "cli" or last.endswith("_cli")


def group(name: str) -> str:
    """The layer / sub-package a module belongs to."""
    if is_command_module(name) or name in (OPTIONS, "edgeage.api"):  # the front ends
        return CLI
    if name == "edgeage.export" or name.startswith("edgeage.export."):
        parts = name.split(".")
        sub = parts[2] if len(parts) > 2 else EXPORT[0].split("/")[1]  # the namespace itself: the lowest
        sub = FLAT_EXPORT.get(sub, sub)
        return f"export/{sub}"
    for pkg, grp in (("edgeage.targets", BACKEND), ("edgeage.train", TRAIN), ("edgeage.models", MODELS)):
        if name == pkg or name.startswith(pkg + "."):
            return grp
    return CORE


def resolve(imported: str, known) -> str | None:
    while imported and imported not in known:
        imported = imported.rsplit(".", 1)[0] if "." in imported else ""
    return imported or None


def statements(name: str, path: str, source: str, known) -> list[set[str]]:
    """For each import statement of a module (any depth): the edgeage modules it names."""
    pkg = name if path.endswith("__init__.py") else name.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            named = {resolve(a.name, known) for a in node.names if a.name.startswith("edgeage")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                mod = ".".join(base[:len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not (mod == "edgeage" or mod.startswith("edgeage.")):
                continue
            # `from pkg import sub` names the sub-module; `from mod import thing` names mod
            named = {f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else resolve(mod, known) for a in node.names}
        else:
            continue
        named -= {None, "edgeage"}  # the bare package: its __init__ only loads names lazily
        if named:
            out.append(named)
    return out


def graph(rev: str | None = None, root: Path = ROOT) -> Counter:
    """(importer group, imported group) -> number of import statements; no self edges."""
    tree = Tree(rev, root)
    known = modules(tree)
    src = tree.sources(list(known.values()))
    edges = Counter()
    for name, path in known.items():
        for named in statements(name, path, src[path], known):
            for dst in {group(m) for m in named} - {group(name)}:
                edges[group(name), dst] += 1
    return edges


def against_layering(edges) -> list[tuple[str, str]]:
    return sorted(e for e in edges if e[1] not in ALLOWED[e[0]])


def edge_lines(edges) -> list[str]:
    bad = set(against_layering(edges))
    return [f"{a:20s} -> {b:20s} {n:3d}{'  AGAINST THE LAYERING' if (a, b) in bad else ''}"
            for (a, b), n in sorted(edges.items(), key=lambda kv: (ORDER.index(kv[0][0]), ORDER.index(kv[0][1])))]


def draw(edges, out: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch

    nodes = [g for g in ORDER if any(g in e for e in edges) or g in (CORE, CLI)]
    x = {g: i for i, g in enumerate(nodes)}
    y = {g: 0.0 for g in nodes}
    fig, ax = plt.subplots(figsize=(11, 4.6), dpi=100)
    ax.set_position([0.01, 0.06, 0.98, 0.86])
    ax.set_xlim(-0.7, len(nodes) - 0.3)
    ax.set_ylim(-0.35, 1.15)
    bad = set(against_layering(edges))
    for (a, b), n in sorted(edges.items()):
        span = x[a] - x[b]
        # leftward (allowed) arcs bend above the nodes, rightward ones below
        rad = 0.5 * (1.0 if abs(span) < 2 else 0.9)
        color = "#c0392b" if (a, b) in bad else ("#7f8c8d" if span < 0 else "#2c3e50")
        arrow = FancyArrowPatch((x[a], y[a]), (x[b], y[b]), connectionstyle=f"arc3,rad={rad}",
                                arrowstyle="-|>", mutation_scale=11, color=color,
                                lw=0.5 + 0.3 * min(n, 16) ** 0.5, shrinkA=18, shrinkB=18, alpha=0.8)
        ax.add_patch(arrow)
        # the label on the curve (quadratic Bezier through matplotlib's arc3 control point), near
        # the importer's end so labels of arcs into one node do not stack
        # (arc3 bends in display space, so the point is found there)
        (ax_, ay_), (bx_, by_) = ax.transData.transform([(x[a], y[a]), (x[b], y[b])])
        cx, cy = (ax_ + bx_) / 2 + rad * (by_ - ay_), (ay_ + by_) / 2 - rad * (bx_ - ax_)
        t = 0.5 if abs(span) < 2 else 0.3
        lx, ly = ax.transData.inverted().transform(((1 - t) ** 2 * ax_ + 2 * t * (1 - t) * cx + t ** 2 * bx_,
                                                    (1 - t) ** 2 * ay_ + 2 * t * (1 - t) * cy + t ** 2 * by_))
        ax.text(lx, ly, str(n), fontsize=7, ha="center", va="center", color=color, zorder=4,
                bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.9))
    for g in nodes:
        ax.text(x[g], y[g], LABELS[g], ha="center", va="center", fontsize=7.5, zorder=5,
                bbox=dict(boxstyle="round,pad=0.35", fc="#eaf2f8" if g.startswith("export") else "#fdfefe",
                          ec="#34495e"))
    ax.axis("off")
    ax.set_title(title, fontsize=9)
    fig.text(0.01, 0.01, "A -> B: A imports B (import statements, lazy ones included; number = statements). "
             "Dark: to a layer on the left; grey: to the right but allowed (core <-> models); "
             "red: against the layering.", fontsize=6.5, color="#555")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rev", help="a git revision to read instead of the working tree")
    ap.add_argument("--out", type=Path, help="PNG to write (omit: print the edge list only)")
    args = ap.parse_args(argv)
    edges = graph(args.rev)
    where = f"git revision {args.rev}" if args.rev else "the working tree"
    print(f"# import edges between layers, {where} (importer -> imported, import statements)")
    print("\n".join(edge_lines(edges)))
    if args.out:
        flat = args.rev and not any(m.startswith("edgeage.export.artifact.") for m in modules(Tree(args.rev)))
        title = f"edgeage import structure at {where}" + (
            " (export/ was flat files: each drawn in the sub-package its code moved to)" if flat else "")
        draw(edges, args.out, title)
        print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
