# Paths and checks shared by build-apk.sh and jvm.sh (sourced, not run).
DEMO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEPS=$DEMO/.deps
BUILD=${EDGEAGE_ANDROID_BUILD:-$DEMO/build}
ANDROID_JAR=$DEPS/bullseye/usr/share/java/com.android.android-23.jar
DX_JAR=$DEPS/bullseye/usr/share/java/com.android.dx-10.0.0.jar
ET=$DEPS/npm/react-native-executorch/package
ET_JAR=$ET/android/libs/classes.jar
ET_LIBS=$ET/third-party/android/libs/executorch
JUNIT_CP=/usr/share/java/junit4.jar:/usr/share/java/hamcrest-core.jar
OPENCV_JAR=/usr/share/java/opencv.jar
OPENCV_JNI=/usr/lib/jni/libopencv_java460.so

die() { echo "error: $*" >&2; exit 1; }

# need FILE_OR_COMMAND... : stop with one clear message naming everything that is missing
need() {
    local missing=()
    for x in "$@"; do
        if [[ $x == /* ]]; then [[ -e $x ]] || missing+=("$x"); else command -v "$x" >/dev/null || missing+=("$x"); fi
    done
    ((${#missing[@]} == 0)) || die "missing: ${missing[*]} -- run android-demo/install-deps.sh first"
}

# javac_into OUT_DIR [javac options...] -- SOURCE_DIR...: compile every .java under the folders
javac_into() {
    local out=$1; shift
    local opts=() srcs=()
    while [[ $1 != -- ]]; do opts+=("$1"); shift; done; shift
    rm -rf "$out"; mkdir -p "$out"
    find "$@" -name '*.java' > "$out.sources"
    javac -nowarn -Xlint:-options -encoding UTF-8 -d "$out" "${opts[@]}" @"$out.sources"
}
