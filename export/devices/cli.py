"""``edgeage android bundle``, ``edgeage device-check`` and ``edgeage device setup`` (commands
only; the work is in ``edgeage.export.devices.bundle`` and the device kinds, reached through the
registry of ``edgeage.export.devices.device``)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import click

from edgeage.cli_options import FiniteRange, InputPath, finish, force_option, stdout_to_stderr, threads_type
from edgeage.utils import EdgeAgeError, check_output

from ..conformance.report import report_text, write_device_report
from .bundle import compare, load_result, make_bundle
from .device import DeviceOptions, device_kinds, kinds_help, open_device
from .kinds.adb import DEFAULT_APK  # --apk's default, shown in the help


class DeviceOption(click.Option):
    """``--device``: its help lists the registered device kinds, read when the help is shown (so
    loading the commands, e.g. for ``edgeage --help``, runs no kind file of EDGEAGE_DEVICE_PATH)."""

    def get_help_record(self, ctx):
        self.help = kinds_help()
        return super().get_help_record(ctx)


class BuildableKind(click.Choice):
    """The device kinds ``edgeage device setup`` builds (``Device.builds``), read from the registry
    when first needed."""

    def __init__(self):
        super().__init__(())

    @property
    def choices(self):
        return tuple(k for k, kind in device_kinds().items() if kind.builds)

    @choices.setter
    def choices(self, _value):  # click.Choice.__init__ assigns it; the registry is the list
        pass


@click.group("android")
def android_group():
    """The Android demo app (android-demo/): its bundle of model + check images."""


@android_group.command("bundle")
@click.option("--artifact", required=True, type=InputPath(exists=True, file_okay=False),
              help="Exported artifact folder (edgeage export): executorch or tflite for the app, "
                   "onnx-opencv46 for the JVM check.")
@click.option("--check-data", type=InputPath(exists=True), default=None,
              help="Labelled faces (UTKFace folder, CSV or prepared cache) for check mode.")
@click.option("--check-count", type=click.IntRange(min=1), default=200, show_default=True,
              help="Check images, spread evenly over --check-data (as edgeage check --limit).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Bundle folder to write.")
@click.option("--target", default=None,
              help="The artifact's target TOML when it is not installed here (e.g. "
                   "android-demo/tools/onnx-opencv46.toml); never a file from the artifact.")
@force_option
def bundle_cmd(artifact, check_data, check_count, out, target, force):
    """Write the app's assets: model file + manifest.json + face detector + canonical check crops
    (PNG) with labels. Put them in the APK (build-apk.sh --bundle) or let device-check push them."""
    check_output(out, force)
    info = make_bundle(artifact, out, check_data, check_count, force=force, target=target)
    click.echo(f"bundle {info['out']}: {info['target']} {info['precision']}, {info['check_images']} check images"
               + (f" (faces not found: {info['faces_not_found']}, centre square used)" if info["check_images"] else ""))


@click.command("device-check")
@click.option("--artifact", required=True, type=InputPath(exists=True, file_okay=False),
              help="The exported artifact the device runs (and the result is compared against).")
@click.option("--device", "device", cls=DeviceOption, default="adb", show_default=True)
@click.option("--python", "python", default=None,
              help="The device side's Python: --device local (default: this one), ssh:// (default: python3 "
                   "on the device).")
@click.option("--identity", default=None, type=click.Path(dir_okay=False),
              help="ssh://: the private key to log in with (ssh -i).")
@click.option("--ssh-option", "ssh_options", multiple=True,
              help="ssh://: an extra ssh -o KEY=VALUE (repeatable), e.g. StrictHostKeyChecking=accept-new.")
@click.option("--serial", default=None, help="adb device serial (needed when several are attached).")
@click.option("--data", type=InputPath(exists=True), default=None, help="Labelled faces to bundle as check images.")
@click.option("--count", type=click.IntRange(min=1), default=200, show_default=True,
              help="Check images taken from --data.")
@click.option("--bundle", "bundle_dir", type=InputPath(exists=True, file_okay=False), default=None,
              help="An existing bundle (edgeage android bundle) instead of --data.")
@click.option("--apk", type=InputPath(dir_okay=False), default=str(DEFAULT_APK), show_default=True,
              help="The app to install (android-demo/build-apk.sh or the Gradle build).")
@click.option("--from-json", "from_json", type=InputPath(exists=True, dir_okay=False), default=None,
              help="Compare this check-result JSON (e.g. the JVM parity run) instead of running a device.")
@click.option("--model", "model_path", type=InputPath(dir_okay=False), default=None,
              help="Float checkpoint to compare with (default: the one the artifact was exported from).")
@click.option("--target", default=None,
              help="Target TOML whose thresholds judge the result (default: the installed target the "
                   "artifact names; never a file from the artifact).")
@click.option("--warmup", type=click.IntRange(0, 100_000), default=3, show_default=True,
              help="Untimed runs on the device before timing.")
@click.option("--threads", type=threads_type(), default=4, show_default=True, help="Runtime threads on the device.")
@click.option("--timeout", type=FiniteRange(min=0, min_open=True), default=900, show_default=True,
              help="Seconds to wait for check mode.")
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Write report.json, report.md (and the device's check-result.json) here.")
@force_option
@click.pass_context
def device_check_cmd(ctx, artifact, device, python, identity, ssh_options, serial, data, count, bundle_dir, apk,
                     from_json, model_path, target, warmup, threads, timeout, as_json, out, force):
    """Run the check on a device and compare its result with the float model on the same
    images, like `edgeage check`: --device adb (the app's check mode on a phone: install, push the
    bundle, run, pull the result), --device local (the Python device side in another
    interpreter), --device ssh://user@host (the Python device side on a Linux device) or
    --device qemu-aarch64[:CPU] (the Python device side as aarch64 code under qemu user-mode
    emulation). Reports drift and the device's latency (none for an emulated device) and
    identity; exits 1 when a threshold of the target's TOML fails."""
    if bundle_dir is None and data is None:
        raise EdgeAgeError("give --data (labelled faces to bundle) or --bundle (an existing bundle with check images)")
    dev = open_device(device, DeviceOptions(python, identity, tuple(ssh_options), serial, apk), artifact)
    if out:
        check_output(out, force)
    with tempfile.TemporaryDirectory(prefix="edgeage-device-check-") as tmp, stdout_to_stderr():
        if bundle_dir is None:
            bundle_dir = make_bundle(artifact, Path(tmp) / "bundle", data, count, target=target,
                                     app=dev.app, progress=False)["out"]
        if from_json is None:
            from_json = dev.run_check(bundle_dir, Path(tmp) / "check-result.json", count, warmup, threads, timeout)
        report = compare(load_result(from_json), bundle_dir, artifact, model_path, str(from_json), target)
        if out:
            write_device_report(out, report, force, result_json=from_json)
    finish(ctx, report, as_json, report_text, "device-check")


@click.group("device")
def device_group():
    """Devices that device-check drives and that edgeage builds itself (qemu-aarch64)."""


@device_group.command("setup")
@click.argument("kind", type=BuildableKind())
@click.option("--cpu", "cpus", multiple=True, help="Also prepare this qemu CPU model's root (repeatable; "
              "cortex-a76, the default CPU, always).")
@click.option("--force", is_flag=True, help="Rebuild even when it is set up.")
def device_setup_cmd(kind, cpus, force):
    """Build and cache an emulated device (once; a re-run is a no-op): qemu-aarch64 = Debian's
    qemu-user-static, an arm64 Debian sysroot with python3.11 (private apt state, dpkg -x, nothing
    installed system-wide) and the runtimes' aarch64 wheels, under EDGEAGE_DEVICES (default
    ~/.cache/edgeage/devices). Needs the network and Debian's apt-get / dpkg."""
    click.echo(device_kinds()[kind].setup(tuple(cpus), force))
