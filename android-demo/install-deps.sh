#!/usr/bin/env bash
# Installs what the Android demo's build and tests need, from Debian packages and npm only
# (idempotent; CI runs it on a fresh machine). Run as root (or with sudo rights for apt-get).
#   apt (bookworm): JDK 17, aapt2, zipalign, apksigner, junit4, libopencv-java (ONNX on the JVM)
#   bullseye, fetched with `apt-get download` through a private apt state (not installed):
#     libandroid-23-java (android.jar, API 23), dalvik-exchange (dx)
#   npm: react-native-executorch@0.8.5 (ExecuTorch classes.jar + libexecutorch.so)
# Everything fetched lands in android-demo/.deps (git-ignored).
set -euo pipefail
source "$(dirname "$0")/tools/common.sh"
SUDO=; [[ $(id -u) == 0 ]] || SUDO=sudo
APT_PKGS=(openjdk-17-jdk-headless aapt zipalign apksigner junit4 libopencv-java zip unzip)
command -v npm >/dev/null || APT_PKGS+=(npm)  # any npm will do (e.g. the one bundled with node)
# more Debian packages a caller needs installed in the same apt run (scripts/install-test-deps.sh)
read -r -a EXTRA <<< "${EXTRA_APT_PKGS:-}"
APT_PKGS+=("${EXTRA[@]}")
ET_VERSION=0.8.5

missing=()
for p in "${APT_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "apt: installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ ! -f $ANDROID_JAR || ! -f $DX_JAR ]]; then
    echo "bullseye: fetching libandroid-23-java and dalvik-exchange"
    st=$DEPS/apt-bullseye
    mkdir -p "$st/lists/partial" "$st/cache/archives/partial" "$DEPS/debs"
    # the machine's own Debian mirror (from its apt sources), with the bullseye suite
    mirror=$({ grep -hoE '^(URIs:|deb) +[^ ]+/debian/?( |$)' /etc/apt/sources.list.d/*.sources \
               /etc/apt/sources.list 2>/dev/null || true; } | awk '{print $2}' | head -1)
    [[ -n $mirror ]] || { echo "install-deps: no Debian mirror found in /etc/apt sources" >&2; exit 1; }
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror bullseye main" > "$st/sources.list"
    touch "$st/status"
    opts=(-o Dir::Etc::SourceList="$st/sources.list" -o Dir::Etc::SourceParts=/dev/null
          -o Dir::State::Lists="$st/lists" -o Dir::Cache="$st/cache" -o Dir::State::status="$st/status"
          -o APT::Sandbox::User=root)
    apt-get "${opts[@]}" update -qq
    (cd "$DEPS/debs" && apt-get "${opts[@]}" download -qq libandroid-23-java dalvik-exchange)
    for deb in "$DEPS"/debs/*.deb; do dpkg-deb -x "$deb" "$DEPS/bullseye"; done
fi

if [[ ! -f $ET_JAR ]]; then
    echo "npm: fetching react-native-executorch@$ET_VERSION"
    mkdir -p "$DEPS/npm/react-native-executorch"
    tgz=$(cd "$DEPS/npm" && npm pack --silent "react-native-executorch@$ET_VERSION" | tail -1)
    tar -xzf "$DEPS/npm/$tgz" -C "$DEPS/npm/react-native-executorch" \
        package/package.json package/android/libs/classes.jar \
        package/third-party/android/libs/executorch
    rm -f "$DEPS/npm/$tgz"
fi

need javac java keytool aapt2 aapt zipalign apksigner zip "$ANDROID_JAR" "$DX_JAR" "$ET_JAR" \
     "$ET_LIBS/arm64-v8a/libexecutorch.so" "$ET_LIBS/x86_64/libexecutorch.so" \
     /usr/share/java/junit4.jar "$OPENCV_JAR" "$OPENCV_JNI"
echo "android-demo dependencies ready in $DEPS"
