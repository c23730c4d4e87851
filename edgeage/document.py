"""Documents: the text of a report or an eval page as a list of blocks (``Title``, ``Para``,
``Table``, ``Pre``), rendered to Markdown and to one self-contained HTML page (CSS inline, PNGs as
data: URLs, no scripts, every string escaped), and the PNG charts (matplotlib Agg). The core's eval
pages and the export stage's check / bench reports share it, so they cannot drift apart. Every
file is written atomically. Imports no torch."""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import NamedTuple, Union

from .utils import atomic_path


def md_table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


class Title(NamedTuple):
    text: str


class Heading(NamedTuple):
    text: str  # a section heading (## / <h2>)


class Para(NamedTuple):
    lines: list  # consecutive lines of one paragraph


class Table(NamedTuple):
    headers: list
    rows: list


class Pre(NamedTuple):
    text: str  # preformatted text, shown as it is


Block = Union[Title, Heading, Para, Table, Pre]


def block_md(b: Block) -> str:
    if isinstance(b, Title):
        return f"# {b.text}"
    if isinstance(b, Heading):
        return f"## {b.text}"
    if isinstance(b, Table):
        return md_table(b.headers, b.rows)
    if isinstance(b, Pre):
        return b.text
    return "\n".join(b.lines)


def blocks_md(blocks: list[Block]) -> str:
    """Markdown of blocks: one blank line between blocks."""
    return "\n\n".join(block_md(b) for b in blocks)


# ---- HTML -------------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 1.5em 2em;
       color: #1d1d1f; max-width: 1400px; line-height: 1.4; }
h1 { font-size: 1.5em; margin: 0 0 .6em 0; }
h2 { font-size: 1.15em; margin: 1.6em 0 .5em 0; border-bottom: 1px solid #ddd; padding-bottom: .2em; }
p { margin: .9em 0 .4em 0; overflow-wrap: anywhere; }
.verdict { padding: .6em 1em; border-radius: 6px; margin: 0 0 1.2em 0; border: 1px solid; }
.verdict strong { font-size: 1.2em; letter-spacing: .04em; }
.verdict ul { margin: .4em 0 0 0; padding-left: 1.4em; }
.verdict li { overflow-wrap: anywhere; }
.verdict.pass { background: #e7f6ea; border-color: #4caf50; color: #1b5e20; }
.verdict.fail { background: #fdecea; border-color: #e53935; color: #8e1c1a; }
table { border-collapse: collapse; margin: .3em 0 1em 0; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: left; vertical-align: top; }
th { background: #f0f2f5; font-weight: 600; }
tr:nth-child(even) td { background: #fafbfc; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.long { max-width: 32em; overflow-wrap: anywhere; font-size: .9em; }
td.pass, tr:nth-child(even) td.pass { background: #e7f6ea; color: #1b5e20; font-weight: 600; }
td.fail, tr:nth-child(even) td.fail { background: #fdecea; color: #b71c1c; font-weight: 600; }
td.long.pass, td.long.fail { font-weight: normal; }
figure { margin: 1em 0; display: inline-block; vertical-align: top; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: .85em; color: #555; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; background: #f6f8fa; padding: .6em; }
"""

_VERDICT_COLUMNS = ("verdict", "result")
_NUMBER = re.compile(r"^[-+]?(\d[\d.]*(e[-+]?\d+)?)( ?(x|%|MB|ms))?$|^-$")


def esc(v) -> str:
    return html.escape(str(v), quote=True)


def _cell_class(header: str, text: str) -> str:
    long = " long" if len(text) > 80 else ""
    if header in _VERDICT_COLUMNS:
        if text.startswith("pass"):
            return "pass" + long
        if text.startswith(("FAIL", "ERROR")):
            return "fail" + long
    if _NUMBER.match(text.strip()):
        return "num"
    return long.strip()


def block_html(b: Block) -> str:
    if isinstance(b, Title):
        return f"<h1>{esc(b.text)}</h1>"
    if isinstance(b, Heading):
        return f"<h2>{esc(b.text)}</h2>"
    if isinstance(b, Table):
        head = "".join(f"<th>{esc(h)}</th>" for h in b.headers)
        body = []
        for row in b.rows:
            cells = []
            for h, c in zip(list(b.headers) + [""] * (len(row) - len(b.headers)), row):
                cls = _cell_class(str(h), str(c))
                cells.append(f'<td class="{cls}">{esc(c)}</td>' if cls else f"<td>{esc(c)}</td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>"
    if isinstance(b, Pre):
        return f"<pre>{esc(b.text)}</pre>"
    return "<p>" + "<br>\n".join(esc(x) for x in b.lines) + "</p>"


def png_data_url(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def page_html(blocks: list[Block], head: str = "", images: list[Path] = ()) -> str:
    """One self-contained page: the title, ``head`` (HTML, e.g. a verdict), the other blocks, the
    PNG charts embedded as data: URLs."""
    title = next((b.text for b in blocks if isinstance(b, Title)), "edgeage report")
    parts = [block_html(b) for b in blocks if isinstance(b, Title)][:1] + ([head] if head else [])
    parts += [block_html(b) for b in blocks if not isinstance(b, Title)]
    if images:
        parts.append("<h2>Plots</h2>")
        parts += [f'<figure><img src="{png_data_url(p)}" alt="{esc(Path(p).name)}">'
                  f"<figcaption>{esc(Path(p).name)}</figcaption></figure>" for p in images]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            + "\n".join(parts) + "\n</body>\n</html>\n")


def write_html(path: Path, page: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


def savefig(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def plt_agg():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
