#!/usr/bin/env bash
# Installs what the test suite needs beyond pip (idempotent; CI runs it on a fresh machine; root or
# sudo for apt-get): the Android demo's build and test dependencies, Debian's OpenSSH server and
# client (the SSH device tests start a real sshd on 127.0.0.1) and Chromium (the HTML reports are
# rendered headless in a test), in one apt run. Then the emulated arm64 device of
# tests/test_device_qemu.py (`edgeage device setup qemu-aarch64`: qemu-user-static, an arm64 Debian
# sysroot and the runtimes' aarch64 wheels under ~/.cache/edgeage/devices, nothing installed
# system-wide; 449 MB, 23 s from scratch here; a no-op when it is there). Run it with edgeage
# installed (the README's test command does).
set -euo pipefail
EXTRA_APT_PKGS="openssh-server openssh-client chromium ${EXTRA_APT_PKGS:-}" \
    bash "$(dirname "$0")/../android-demo/install-deps.sh"
if command -v edgeage >/dev/null; then
    edgeage device setup qemu-aarch64
else
    echo "install-test-deps: edgeage is not installed: skipping the qemu-aarch64 device (tests/test_device_qemu.py sets it up itself)" >&2
fi
