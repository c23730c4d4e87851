#!/usr/bin/env bash
# Installs what the test suite needs beyond pip (idempotent; CI runs it on a fresh machine; root or
# sudo for apt-get): the Android demo's build and test dependencies, Debian's OpenSSH server and
# client (the SSH device tests start a real sshd on 127.0.0.1) and Chromium (the HTML reports are
# rendered headless in a test), in one apt run.
set -euo pipefail
EXTRA_APT_PKGS="openssh-server openssh-client chromium ${EXTRA_APT_PKGS:-}" \
    bash "$(dirname "$0")/../android-demo/install-deps.sh"
