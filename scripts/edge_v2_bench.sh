#!/usr/bin/env bash
# Issue 18's committed measurements of the shipped default (edge model v2), in one go:
#   1. edgeage eval of mgpnet-e (the default when this ran; now --model mgpnet-e) on the test split: clean, degraded (p = 0.2), flip TTA;
#   2. INT8 PTQ and QAT of the default on every backend (scripts/compression_bench.py --part int8);
#   3. the previous default (`--model mgpnet-xs`) in INT8 PTQ on every target (reference rows);
#   4. one edgeage bench: fp32 on every target + those INT8 results, the OMZ peer as a reference
#      row, throughput at 1 / 2 threads and batch 1 / 8 / 32;
#   5. the OpenVINO INT8 PTQ and QAT artifacts' op profiles (float islands): edgeage check --op-profile.
# Steps whose output exists are skipped (delete the folder to redo one). Run on a quiet machine:
# the bench times every model in a fresh process and its ratios are only meaningful within one run.
#
#   bash scripts/edge_v2_bench.sh [DATA=.cache/utk-prepared] [RUNS=runs/edge-v2-int8] [OUT=bench/edge-v2]
set -euo pipefail
DATA=${DATA:-.cache/utk-prepared}
RUNS=${RUNS:-runs/edge-v2-int8}
OUT=${OUT:-bench/edge-v2}
export OMP_NUM_THREADS=1
mkdir -p "$OUT"
say() { echo "\$ $*" >&2; "$@"; }

for spec in "eval.json:" "eval_degraded.json:--degrade-p 0.2" "eval_tta.json:--tta-flip"; do
  f=${spec%%:*}; opt=${spec#*:}
  [ -f "$OUT/$f" ] || { say edgeage eval --model mgpnet-e --data "$DATA" --split test $opt --json > "$OUT/$f.tmp" && mv "$OUT/$f.tmp" "$OUT/$f"; }
done

say python scripts/compression_bench.py --model mgpnet-e --no-prune --part int8 --data "$DATA" --runs "$RUNS"

arts=()
for b in openvino onnx xnnpack litert; do arts+=("$RUNS/ptq-$b" "$RUNS/qat-$b"); done
for t in openvino onnx executorch tflite; do
  d="$RUNS/mgpnet-xs-ptq-$t"
  [ -f "$d/manifest.json" ] || say edgeage export --target "$t" --precision int8 --model mgpnet-xs --calib-data "$DATA" --out "$d"
  arts+=("$d")
done

if [ ! -f "$OUT/bench.json" ]; then
  say edgeage bench --model mgpnet-e --data "$DATA" --split test --precisions fp32 --artifacts "$(IFS=,; echo "${arts[*]}")" \
      --peer bench/peers/omz-0013.toml --threads 1,2 --batch 1,8,32 --out "$OUT" || true  # a failed row is a row
fi

[ -f "$OUT/check-openvino-int8/report.json" ] || say edgeage export --target openvino --precision int8 \
    --from "$RUNS/ptq-openvino" --out "$RUNS/ptq-openvino-artifact"
[ -f "$OUT/check-openvino-int8/report.json" ] || say edgeage check --artifact "$RUNS/ptq-openvino-artifact" \
    --data "$DATA" --split test --op-profile --out "$OUT/check-openvino-int8" || true
[ -f "$OUT/check-openvino-int8-qat/report.json" ] || say edgeage export --target openvino --precision int8 \
    --from "$RUNS/qat-openvino" --out "$RUNS/qat-openvino-artifact"
[ -f "$OUT/check-openvino-int8-qat/report.json" ] || say edgeage check --artifact "$RUNS/qat-openvino-artifact" \
    --data "$DATA" --split test --op-profile --out "$OUT/check-openvino-int8-qat" || true
cat "$OUT/bench.md"
