#!/usr/bin/env bash
# Issue 24's committed measurements of a new shipped default, in one go (session 20: mgpnet-xs96):
#   1. edgeage eval of the default on the test split by group (race, gender, decade, face size), and
#      clean / degraded (p = 0.2) / flip TTA / grey passes as JSON: bench/eval-groups/$MODEL;
#   2. the face-resolution curve of every shipped model in one plot: bench/eval-groups/curve;
#   3. INT8 PTQ and QAT of the default on every backend (scripts/compression_bench.py --part int8);
#   4. the other shipped models in OpenVINO INT8 (mgpnet-e PTQ and QAT, mgpnet-xs PTQ): reference rows;
#   5. one edgeage bench: the default in fp32 on every target + those INT8 results, the OMZ peer as a
#      reference row, on the whole test split: $OUT.
# Steps whose output exists are skipped (delete it to redo one). Run on a quiet machine: the bench
# times every model in a fresh process and its ratios are only meaningful within one run.
#
#   [MODEL=mgpnet-xs96] [DATA=.cache/utk-prepared] [RUNS=runs/default-int8] [OUT=bench/default-xs96] bash scripts/default_bench.sh
set -euo pipefail
MODEL=${MODEL:-mgpnet-xs96}
DATA=${DATA:-.cache/utk-prepared}
RUNS=${RUNS:-runs/default-int8}
OUT=${OUT:-bench/default-xs96}
GROUPS_OUT=bench/eval-groups/$MODEL
export OMP_NUM_THREADS=1
say() { echo "\$ $*" >&2; "$@"; }

[ -f "$GROUPS_OUT/eval.json" ] || say edgeage eval --model "$MODEL" --data "$DATA" --split test \
    --by race,gender,decade,face-size --out "$GROUPS_OUT"
for spec in "eval_degraded.json:--degrade-p 0.2" "eval_tta.json:--tta-flip" "eval_grey.json:--grey"; do
  f=${spec%%:*}; opt=${spec#*:}
  [ -f "$GROUPS_OUT/$f" ] || { say edgeage eval --model "$MODEL" --data "$DATA" --split test $opt --json \
      > "$GROUPS_OUT/$f.tmp" && mv "$GROUPS_OUT/$f.tmp" "$GROUPS_OUT/$f"; }
done
[ -f bench/eval-groups/curve/curve.json ] && grep -q "\"$MODEL\"" bench/eval-groups/curve/curve.json || \
  say edgeage resolution-curve --model mgpnet-e --model mgpnet-xs --model "$MODEL" --data "$DATA" --split test \
      --out bench/eval-groups/curve --force

say python scripts/compression_bench.py --model "$MODEL" --no-prune --part int8 --data "$DATA" --runs "$RUNS"

arts=()
for b in openvino onnx xnnpack litert; do arts+=("$RUNS/ptq-$b" "$RUNS/qat-$b"); done
for spec in "mgpnet-e:ptq" "mgpnet-e:qat" "mgpnet-xs:ptq"; do
  m=${spec%%:*}; method=${spec#*:}; d="$RUNS/$m-$method-openvino"
  extra=(); [ "$method" = qat ] && extra=(--epochs 2 --max-steps 100)
  [ -f "$d/manifest.json" ] || say edgeage quantize --model "$m" --method "$method" --backend openvino \
      --data "$DATA" "${extra[@]}" --out "$d"
  arts+=("$d")
done

if [ ! -f "$OUT/bench.json" ]; then
  say edgeage bench --model "$MODEL" --data "$DATA" --split test --precisions fp32 \
      --artifacts "$(IFS=,; echo "${arts[*]}")" --peer bench/peers/omz-0013.toml --out "$OUT" || true  # a failed row is a row
fi
cat "$OUT/bench.md"
