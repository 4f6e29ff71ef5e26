#!/usr/bin/env bash
# Retrain on a lent GPU machine in ONE call (README, "Retraining on a GPU"): the attention model and its
# `none` twin train side by side for MINUTES each (same preset, same data, same budget), then their
# best checkpoints are left under OUT slimmed (fp16 weights, no optimizer state: ~15 MB for the `gpu`
# preset, under the 16 MiB a file may come back as). Evaluation, export and publishing run back on
# the CPU machine: `python -m training.cli export --checkpoint <OUT>/attention.pt --none-checkpoint
# <OUT>/none.pt --version <next> --trained-on "..."`.
#
# Runs the project from source with the machine's own torch (nothing is installed there); the corpus
# and tokenizer are built here by `make data` and carried (data/corpus, data/tokenizer), and must be
# the same files at export time. With a 15-minute device budget: MINUTES=7 leaves time for the start.
#
#   MINUTES=7 OUT=$OUT bash training/device_retrain.sh
set -euo pipefail

MINUTES=${MINUTES:-7}
PRESET=${PRESET:-gpu}
CORPUS=${CORPUS:-data/corpus}
TOKENIZER=${TOKENIZER:-data/tokenizer/spm.model}
RUNS=${RUNS:-runs/device}
OUT=${OUT:?OUT: the folder to leave the checkpoints and logs in}
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

for path in "$CORPUS/train.tsv" "$CORPUS/valid.tsv" "$TOKENIZER"; do
    [[ -f $path ]] || { echo "missing $path: run make data here and carry data/" >&2; exit 2; }
done
mkdir -p "$OUT"
"$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
      torch.cuda.get_device_name() if torch.cuda.is_available() else '')"

declare -A pids
for attention in luong_general none; do
    label=$([[ $attention == none ]] && echo none || echo attention)
    "$PYTHON" -m training.cli train --preset "$PRESET" --attention "$attention" --minutes "$MINUTES" \
        --corpus "$CORPUS" --tokenizer "$TOKENIZER" --out "$RUNS/$label" --restart \
        >"$OUT/train-$label.log" 2>&1 &
    pids[$label]=$!
done
failed=0
for label in "${!pids[@]}"; do
    wait "${pids[$label]}" || { echo "training $label failed: see $OUT/train-$label.log" >&2; failed=1; }
done
for label in "${!pids[@]}"; do
    tail -n 3 "$OUT/train-$label.log"
    [[ -f $RUNS/$label/best.pt ]] && "$PYTHON" -m training.cli slim "$RUNS/$label/best.pt" "$OUT/$label.pt"
done
exit "$failed"
