#!/usr/bin/env bash
# The figures of a model card, from one command (one torch thread each; about 20 minutes on one
# core of the 2-core development machine for the 2.3 M-parameter bundled model, 2026-11-24):
#
#   bash benchmarks/model_card.sh MODEL OUT [BASELINE]
#
# MODEL and BASELINE: checkpoint directories or bundled names. Needs data/music21's valid and test
# splits (or DATA=folder): mmt prepare music21 - data/music21 --splits valid test
# Writes to OUT: valid_loss.txt (per-field loss on the valid split, BASELINE too),
# evaluate/ (every mode on the whole test split, ground truth beside it), request.md (the
# instrument benchmark, without and with the sampler's help), analysis/ (the report: attention,
# embeddings and the octave score, the evaluation table). Each step resumes or is cheap to rerun.
set -euo pipefail
if [ $# -lt 2 ] || [ $# -gt 3 ]; then
    echo "usage: bash benchmarks/model_card.sh MODEL OUT [BASELINE]" >&2
    exit 2
fi
model=$1
out=$2
baseline=${3:-}
data=${DATA:-data/music21}
python=${PYTHON:-python}
mmt=${MMT:-mmt}
export OMP_NUM_THREADS=1
mkdir -p "$out"
"$python" benchmarks/valid_loss.py "$data" valid "$model" ${baseline:+"$baseline"} | tee "$out/valid_loss.txt"
"$mmt" evaluate "$model" --data "$data" --split test --out "$out/evaluate" --quiet \
    --modes unconditioned instrument continuation-4 continuation-16 accompaniment infill
"$python" benchmarks/request.py --model "$model" -n 16 --bars 16 --data "$data" | tee "$out/request.md"
"$mmt" analyze "$model" --data "$data" --split test -n 16 --out "$out/analysis" --eval "$out/evaluate" --quiet
