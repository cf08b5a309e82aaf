#!/usr/bin/env bash
# The commands that produced the bundled checkpoints: a 2-core CPU, random crops,
# each run capped by wall time (the learning-rate schedule follows that budget).
# See each model card (checkpoints/NAME.json) for the steps actually reached.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m fusion train --model funfusean      --data mni --out checkpoints --crop 96 --steps 6000 --val-every 500 --time-limit-min 17
python -m fusion train --model deepfuse       --data mni --out checkpoints --crop 96 --steps 8000 --val-every 500 --time-limit-min 14
python -m fusion train --model masknet        --data mni --out checkpoints --crop 64 --steps 6000 --val-every 500 --time-limit-min 17
python -m fusion train --model deeppedestrian --data mni --out checkpoints --crop 64 --steps 4000 --val-every 500 --time-limit-min 17
