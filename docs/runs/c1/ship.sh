#!/usr/bin/env bash
# What "ship" means in C1's rule (docs/experiments.md, 2026-12-03), as commands, for the recipe the rule names.
# Written before C1's figures; run it only if the rule ships R5 or R6. Usage, from a checkout's root:
#   bash docs/runs/c1/ship.sh r5|r6
# Each step rewrites the shipped assets it names; `git diff --stat assets/` afterwards shows what changed, and nothing
# is committed by this script. CPU time here (2 cores): the training ~1 h, the rest ~30 min.
set -euo pipefail
PY=${PY:-.venv/bin/python}
BIN=$(dirname "$PY")
R5="--image-size 96 --epochs 12 --batch-size 32 --optimizer adamw --lr 1e-3 --weight-decay 0.05 --no-norm-bias-decay \
 --lr-schedule cosine --warmup-epochs 1 --class-weights sqrt --ema-decay 0.99 --amp off --val-by-subject \
 --slices-per-subject 16 --augment --dropout 0.3 --label-smoothing 0.1 --select last"
case "${1:-}" in
  r5) RECIPE=$R5 ;;
  r6) RECIPE="$R5 --aux-nwbv 0.5" ;;
  *) echo "usage: ship.sh r5|r6" >&2; exit 2 ;;
esac
NAME=$1
WORK=runs/ship_$NAME && mkdir -p "$WORK"

# 1. The network: the recipe on the published train split. The whole subjects of --val-fraction are held out, as in
#    every fold (`--select last`: they choose nothing, and build-faithfulness scores the maps on them). --resume:
#    a rerun continues from the last finished epoch (a fresh folder starts from scratch).
"$BIN/alzmri-train" train $RECIPE --val-fraction 0.1 --output-dir "$WORK/train" --run-name "ship-$NAME" --resume \
  --export-dir assets

# 2. Its new-subject figures and temperature: fold seed 0's folds are committed (docs/runs/$NAME), so crossval trains
#    nothing; it rewrites assets/crossval.json and crossval_predictions.csv and sets the out-of-fold temperature in
#    assets/model_config.json.
rm -rf "$WORK/cv" && cp -r "docs/runs/$NAME" "$WORK/cv"
"$BIN/alzmri-train" crossval --output-dir "$WORK/cv" --calibrate assets/model_config.json \
  --run-name "ship-$NAME-crossval" -- $RECIPE

# 3. What depends on the network: the guard's spread thresholds, the faithfulness table, the published-split view.
"$BIN/alzmri-train" data build-guard
"$BIN/alzmri-train" data build-faithfulness --threads 2
"$BIN/alzmri" evaluate

# 4. The speed targets at the new size, against the seed's naive way, in one run each.
$PY -m benchmarks.bench_serving   # one slice with the default engine (20 ms), upload -> stage + map, naive way beside
$PY -m benchmarks.bench_pipeline
$PY -m benchmarks.bench_cli
$PY -m benchmarks.bench_workflow  # the browser session: upload -> stage and overlay drawn (1 s p50)
echo "done: review git diff --stat assets/, then the sidebar, model card, README and /v1/model figures"
