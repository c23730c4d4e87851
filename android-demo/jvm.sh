#!/usr/bin/env bash
# The Java core on the desktop JVM (run install-deps.sh first):
#   jvm.sh test GOLDEN_DIR               JUnit tests of core/ against golden vectors
#                                        (make them with tools/make_golden.py)
#   jvm.sh check BUNDLE OUT.json [COUNT] the app's check mode with an ONNX model run by OpenCV DNN
#                                        (compare: edgeage device-check --from-json OUT.json)
set -euo pipefail
source "$(dirname "$0")/tools/common.sh"
need javac java /usr/share/java/junit4.jar /usr/share/java/hamcrest-core.jar "$OPENCV_JAR" "$OPENCV_JNI"
C=$BUILD/jvm
case ${1:-} in
    test)
        [[ -n ${2:-} ]] || die "usage: jvm.sh test GOLDEN_DIR"
        javac_into "$C/test" --release 8 -cp "$JUNIT_CP" -- "$DEMO/core/src"
        java -Dedgeage.golden="$2" -cp "$C/test:$JUNIT_CP" org.junit.runner.JUnitCore \
            org.edgeage.core.GoldenTest org.edgeage.core.JsonTest org.edgeage.core.BundleTest ;;
    check)
        [[ -n ${3:-} ]] || die "usage: jvm.sh check BUNDLE OUT.json [COUNT]"
        javac_into "$C/check" --release 8 -cp "$OPENCV_JAR" -- "$DEMO/core/src/main" "$DEMO/jvm/src"
        java -Djava.library.path="$(dirname "$OPENCV_JNI")" -cp "$C/check:$OPENCV_JAR" \
            org.edgeage.jvm.JvmCheck "$2" "$3" "${4:-0}" ;;
    *) die "usage: jvm.sh test GOLDEN_DIR | jvm.sh check BUNDLE OUT.json [COUNT]" ;;
esac
