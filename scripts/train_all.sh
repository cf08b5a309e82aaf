#!/usr/bin/env bash
# The commands that produced the bundled checkpoints (2-core CPU, crops; see each model card).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m fusion train --model funfusean      --data mni --out checkpoints --crop 96  --steps 2500 --val-every 250 --time-limit-min 12
python -m fusion train --model deepfuse       --data mni --out checkpoints --crop 128 --steps 4000 --val-every 400 --time-limit-min 12
python -m fusion train --model masknet        --data mni --out checkpoints --crop 64  --steps 2500 --val-every 250 --time-limit-min 12
python -m fusion train --model deeppedestrian --data mni --out checkpoints --crop 64  --steps 1500 --val-every 250 --time-limit-min 12
