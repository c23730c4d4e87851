#!/usr/bin/env bash
# Installs what the test suite needs beyond pip (idempotent; CI runs it on a fresh machine; root or
# sudo for apt-get): Debian's OpenSSH server and client (the SSH device tests start a real sshd on
# 127.0.0.1), then the Android demo's build and test dependencies.
set -euo pipefail
SUDO=; [[ $(id -u) == 0 ]] || SUDO=sudo
missing=()
for p in openssh-server openssh-client; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "apt: installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
bash "$(dirname "$0")/../android-demo/install-deps.sh"
