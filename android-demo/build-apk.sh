#!/usr/bin/env bash
# A signed debug APK from Debian packages only (run install-deps.sh first), no Gradle:
#   aapt2 (manifest + resources [+ a bundle as assets]), javac against android.jar API 23 (bullseye),
#   dx with --min-sdk-version=24, zip (+ ExecuTorch JNI libs for arm64-v8a and x86_64), zipalign,
#   apksigner with a generated debug keystore (android-demo/.deps/debug.keystore).
# Compiled here: core/ + app/src/main (ExecuTorch runner against react-native-executorch's classes.jar).
# Not compiled here: app/src/litert (LiteRT runner + BlazeFace detector): only the Gradle build has LiteRT.
#
#   android-demo/build-apk.sh [--bundle DIR] [--out FILE.apk]
#   (default out: android-demo/build/apk/edgeage-demo-debug.apk; --bundle: `edgeage android bundle` output)
set -euo pipefail
source "$(dirname "$0")/tools/common.sh"
BUNDLE= APK=$BUILD/apk/edgeage-demo-debug.apk
while (($#)); do
    case $1 in
        --bundle) BUNDLE=$2; shift 2 ;;
        --out) APK=$(realpath -m "$2"); shift 2 ;;
        *) die "usage: build-apk.sh [--bundle DIR] [--out FILE.apk]" ;;
    esac
done
need javac java keytool aapt2 zipalign apksigner zip "$ANDROID_JAR" "$DX_JAR" "$ET_JAR" \
     "$ET_LIBS/arm64-v8a/libexecutorch.so" "$ET_LIBS/x86_64/libexecutorch.so"
W=$BUILD/apk/work
rm -rf "$W"
mkdir -p "$W/gen" "$W/stage"

# 1. manifest + resources (+ the bundle as assets/edgeage)
aapt2 compile --dir "$DEMO/app/src/main/res" -o "$W/res.zip"
assets=()
if [[ -n $BUNDLE ]]; then
    [[ -f $BUNDLE/manifest.json ]] || die "$BUNDLE: not a bundle (make one with: edgeage android bundle)"
    mkdir -p "$W/assets/edgeage" && cp -r "$BUNDLE"/. "$W/assets/edgeage/"
    assets=(-A "$W/assets")
fi
# the manifest has no package attribute (AGP 8 takes it from the namespace): add it here
sed 's|<manifest |<manifest package="org.edgeage.demo" |' "$DEMO/app/src/main/AndroidManifest.xml" > "$W/AndroidManifest.xml"
aapt2 link -o "$W/base.apk" -I "$ANDROID_JAR" --manifest "$W/AndroidManifest.xml" --java "$W/gen" \
    --min-sdk-version 24 --target-sdk-version 34 --version-code 1 --version-name 0.1.0 "${assets[@]}" "$W/res.zip" \
    2> >(grep -v "resources.arsc in APK .* is compressed" >&2)

# 2. Java 8 bytecode (what dx reads; no lambdas in the sources: dx rejects them below API 26)
javac_into "$W/classes" -source 8 -target 8 -bootclasspath "$ANDROID_JAR" -cp "$ET_JAR" -- \
    "$DEMO/core/src/main/java" "$DEMO/app/src/main/java" "$W/gen"

# 3. dex (the app + org.pytorch.executorch classes)
java -cp "$DX_JAR" com.android.dx.command.Main --dex --min-sdk-version=24 \
    --output="$W/stage/classes.dex" "$W/classes" "$ET_JAR"

# 4. classes.dex + native libs (stored uncompressed), page-aligned
for abi in arm64-v8a x86_64; do
    mkdir -p "$W/stage/lib/$abi" && cp "$ET_LIBS/$abi/libexecutorch.so" "$W/stage/lib/$abi/"
done
cp "$W/base.apk" "$W/unaligned.apk"
(cd "$W/stage" && zip -q -X "$W/unaligned.apk" classes.dex && zip -q -X -0 -r "$W/unaligned.apk" lib)
zipalign -p -f 4 "$W/unaligned.apk" "$W/aligned.apk"

# 5. sign with the debug key (kept, so a rebuilt APK installs over the old one)
KS=$DEPS/debug.keystore
[[ -f $KS ]] || keytool -genkeypair -keystore "$KS" -storepass android -keypass android \
    -alias androiddebugkey -dname "CN=Android Debug,O=Android,C=US" -keyalg RSA -keysize 2048 \
    -validity 10000 >/dev/null 2>&1
mkdir -p "$(dirname "$APK")"
apksigner sign --ks "$KS" --ks-pass pass:android --key-pass pass:android --out "$APK" "$W/aligned.apk"
apksigner verify "$APK"
echo "built $APK"
