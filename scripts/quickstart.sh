#!/usr/bin/env bash
# Set up, then train a VAE on the bundled digits (offline) and show its figures and test metrics.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/genlab train vae --data digits --epochs 40 --z-dim 2 --out runs/quickstart
echo
echo "Open the pictures in runs/quickstart/figures/ (samples, reconstructions, latent grid, interpolation, curves)."
