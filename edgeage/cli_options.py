"""What the command modules share: option types (``InputPath``, ``FiniteRange``, ``threads_type``),
options (``model_option``, ``crop_option``, ``force_option``, ``PRECISIONS``) and output helpers
(``emit_json``, ``stdout_to_stderr``, ``finish``: a check report and its exit status,
``echo_warnings``: calibration warnings). ``edgeage.cli`` and every stage's command module
(``edgeage.train.cli``, ``edgeage.export.*.cli``, ...) import their shared options from here and
never from each other."""
from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from .check_report import CheckReport

class FiniteRange(click.FloatRange):
    """A float option: finite (nan and inf are refused, which click's FloatRange lets through)."""

    def convert(self, value, param, ctx):
        import math

        rv = super().convert(value, param, ctx)
        if rv is not None and not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return rv


MAX_THREADS = 256   # more runtime threads than any edge CPU has cores is a typo


def threads_type() -> click.IntRange:
    return click.IntRange(1, MAX_THREADS)


class InputPath(click.Path):
    """A path option or argument the command reads: recorded (``edgeage.utils.register_input``) so
    that no output of the command may equal or contain it. Names that are not paths (``--model
    mgpnet-xs``) are left alone."""

    def convert(self, value, param, ctx):
        from .utils import register_input

        rv = super().convert(value, param, ctx)
        if rv is not None and os.path.exists(rv):
            register_input(rv)
        return rv


def model_option(f):
    return click.option("--model", "model_path", type=InputPath(dir_okay=False), default=None,
                        help="Checkpoint (.pt), or the name of a shipped model (`edgeage models` lists "
                             "them). Default: the shipped default model.")(f)


def detector_option(f):
    return click.option("--detector", type=InputPath(exists=True, file_okay=False), default=None,
                        help="An exported face detector (`edgeage detector export`) run by its own runtime, "
                             "instead of the shipped .tflite by LiteRT.")(f)


def crop_option(f):
    return click.option("--crop", type=click.Choice(["detect", "none"]), default=None,
                        help="Face crop policy (default: the model manifest's, i.e. detect). "
                             "none = use each image as is.")(f)


def force_option(f):
    return click.option("--force", is_flag=True,
                        help="Use --out even if it is a non-empty folder edgeage did not write (its "
                             "contents may be replaced).")(f)


def emit_json(obj) -> None:
    """Exactly one JSON object on stdout."""
    click.echo(json.dumps(obj, default=str))


# the precisions --precision offers (a target supports some of them: its TOML's precisions)
from .backend import PRECISIONS  # noqa: E402 - the one list, re-exported for the command modules


@contextlib.contextmanager
def stdout_to_stderr():
    """Send everything written to stdout (Python and C level: runtimes print there) to stderr."""
    sys.stdout.flush()
    saved = os.dup(1)
    old = sys.stdout
    try:
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout = old
        os.dup2(saved, 1)
        os.close(saved)


def finish(ctx, report: CheckReport, as_json: bool, text_fn, label: str) -> None:
    """Print a check report (one JSON object with --json, else ``text_fn(report)``); exit 1 if it failed."""
    from edgeage.export.conformance.report import compact

    if as_json:
        emit_json(compact(report))
    else:
        click.echo(text_fn(report))
    if not report.passed:
        click.echo(f"{label} FAILED: {'; '.join(report.failures)}", err=True)
        ctx.exit(1)


def echo_warnings(caught) -> None:
    """Print the calibration warnings (fewer images than asked, images skipped, no face found)."""
    from edgeage.export.artifact.calibration import CalibrationWarning

    for w in caught:
        if issubclass(w.category, CalibrationWarning):
            click.echo(f"warning: {w.message}", err=True)
