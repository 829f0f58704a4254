#!/usr/bin/env bash
# Set up, then train a VAE on the bundled digits (offline) and show its figures and test metrics.
# Run it again and it trains into a new folder (runs/quickstart-2, ...): a finished run is never replaced.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
OUT=runs/quickstart
i=2
while [ -e "$OUT" ]; do OUT="runs/quickstart-$i"; i=$((i + 1)); done
.venv/bin/genlab train vae --data digits --epochs 40 --z-dim 2 --out "$OUT"
echo
echo "Open the pictures in $OUT/figures/ (samples, reconstructions, latent grid, interpolation, curves)."
echo
echo "To type \`genlab\` without the .venv/bin/ prefix, put it on your PATH in this shell:"
echo "  source .venv/bin/activate"
echo "then, e.g.:"
echo "  genlab eval $OUT --json"
echo "  genlab experiment list"
