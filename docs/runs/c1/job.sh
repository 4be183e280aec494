#!/usr/bin/env bash
# C1 (docs/experiments.md, 2026-12-03): one fold of one recipe at one fold seed. Usage: job.sh RECIPE SEED FOLD
cd /work/c1
SHIP="--image-size 48 --epochs 6 --batch-size 32 --optimizer adamw --lr 1e-3 --weight-decay 0.05 --no-norm-bias-decay \
 --lr-schedule cosine --warmup-epochs 1 --class-weights sqrt --ema-decay 0.99 --amp off --threads 1"
R5="--image-size 96 --epochs 12 --batch-size 32 --optimizer adamw --lr 1e-3 --weight-decay 0.05 --no-norm-bias-decay \
 --lr-schedule cosine --warmup-epochs 1 --class-weights sqrt --ema-decay 0.99 --amp off --val-by-subject \
 --slices-per-subject 16 --augment --dropout 0.3 --label-smoothing 0.1 --select last --threads 1"
R6="$R5 --aux-nwbv 0.5"  # R6 = R5 + the auxiliary nWBV target (added to C1 at 08:05, before any C1 result)
case "$1" in ship) RECIPE=$SHIP ;; r5) RECIPE=$R5 ;; r6) RECIPE=$R6 ;; *) echo "unknown recipe $1"; exit 2 ;; esac
exec nice -n 10 /work/main/.venv/bin/python -m model.training.crossval --seed "$2" --output-dir runs/c1/$1_s$2 \
 --out runs/c1/$1_s$2.json --predictions-out runs/c1/$1_s$2_pred.csv --run-name c1-$1-seed$2 --bootstrap 2000 \
 --only-fold "$3" -- $RECIPE
