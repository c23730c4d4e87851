#!/usr/bin/env bash
# Issue 26, goal 3: the whole video pipeline at 1 thread, side by side in one run: both shipped
# models' OpenVINO INT8 exports, with the shipped .tflite detector (LiteRT) and with the detector
# exported to OpenVINO fp32 and INT8, each at --detect-every 1 and 2; then the same clip through
# the code of BASE (a commit: "before"), for the throughput ratio.
#
#   BASE=8fde752 bash scripts/video_pipeline_bench.sh [OUT]      # OUT: bench/video/pipeline-v2
#
# Needs ../shared/datasets/utkface (the clip's faces, INT8 calibration). Temp files under $TMP.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench/video/pipeline-v2}
BASE=${BASE:-8fde752}
DATA=${DATA:-../shared/datasets/utkface}
TMP=$(mktemp -d /tmp/edgeage-vbench-XXXX)
trap 'rm -rf "$TMP"' EXIT
export OMP_NUM_THREADS=1
python scripts/video_ablation.py --clip-only "$TMP/clip.mp4"
edgeage export --target openvino --precision int8 --calib-data "$DATA" --out "$TMP/xs-int8"
edgeage export --model mgpnet-e --target openvino --precision int8 --calib-data "$DATA" --out "$TMP/e-int8"
edgeage detector export --target openvino --out "$TMP/det-fp32"
edgeage detector export --target openvino --precision int8 --calib-data "$DATA" --out "$TMP/det-int8"
edgeage detector check --artifact "$TMP/det-int8" --data "$DATA" --out "$OUT/detector-check-int8" --force
edgeage pipeline-bench --video "$TMP/clip.mp4" --artifact "$TMP/xs-int8" --artifact "$TMP/e-int8" \
    --detector "$TMP/det-fp32" --detector "$TMP/det-int8" --detect-every 1 --detect-every 2 \
    --no-torch --rounds 3 --out "$OUT/after" --force
# before: BASE's code (package layout rebuilt from its tree) on the same clip and artifacts
mkdir -p "$TMP/base-src" "$TMP/base"
git archive "$BASE" edgeage export targets train | tar -x -C "$TMP/base-src"
cp -r "$TMP/base-src/edgeage" "$TMP/base/edgeage"
for d in export targets train; do cp -r "$TMP/base-src/$d" "$TMP/base/edgeage/$d"; done
(cd "$TMP" && PYTHONPATH="$TMP/base" python -c "import edgeage.preprocess as p; assert p.__file__.startswith('$TMP/base')" \
  && PYTHONPATH="$TMP/base" python -m edgeage.cli pipeline-bench --video "$TMP/clip.mp4" --artifact "$TMP/xs-int8" \
     --artifact "$TMP/e-int8" --no-torch --rounds 3 --out "$OLDPWD/$OUT/before" --force)
python - "$OUT" "$BASE" <<'PY'
import json, sys
out, base = sys.argv[1], sys.argv[2]
a = json.load(open(f"{out}/after/pipeline.json")); b = json.load(open(f"{out}/before/pipeline.json"))
before = {r["model"]: r["frames_per_s"] for r in b["rows"]}
rows = []
for r in a["rows"]:
    name = r["model"].split(" + ")[0].split(", detect")[0]
    rows.append({"row": r["model"], "frames_per_s": round(r["frames_per_s"], 1), "before": round(before[name], 1),
                 "ratio": round(r["frames_per_s"] / before[name], 2), "age_drift": r.get("age_drift_vs_first")})
json.dump({"base": base, "rows": rows}, open(f"{out}/ratio.json", "w"), indent=1)
print("| row | frames/s | before (" + base + ") | ratio | age drift max / mean (years) |\n|---|---|---|---|---|")
for x in rows:
    d = x["age_drift"]
    print(f"| {x['row']} | {x['frames_per_s']} | {x['before']} | {x['ratio']}x | "
          + ("(reference)" if d is None else f"{d['max']:.2f} / {d['mean']:.2f}") + " |")
PY
