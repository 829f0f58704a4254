#!/usr/bin/env bash
# Set up, then show what genlab is for, offline: four likelihood families (VAE, RealNVP flow, DDPM diffusion,
# PixelCNN) trained on the bundled 8x8 digits, one bits/dim table of the same test images, their samples side
# by side, and the HTML report opened at that comparison (`genlab experiment run likelihood-table --quick`).
# Run it again and it writes a new folder (runs/quickstart-2, ...): a finished run is never replaced.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
OUT=runs/quickstart
i=2
while [ -e "$OUT" ]; do OUT="runs/quickstart-$i"; i=$((i + 1)); done
echo "Training a VAE, a RealNVP flow, a DDPM and a PixelCNN on the bundled 8x8 digits into $OUT"
echo "(about a minute on 2 cores; its summary is $OUT/summary.json) ..."
.venv/bin/genlab experiment run likelihood-table --quick --out "$OUT" > /dev/null
INDEX=$(.venv/bin/genlab report "$OUT" | tail -n 1)
PAGE="$OUT/report/experiment-$(basename "$OUT").html"      # the report's page of this experiment
[ -f "$PAGE" ] || PAGE=${INDEX:-$OUT/report/index.html}
URL="file://$(cd "$(dirname "$PAGE")" && pwd)/$(basename "$PAGE")"
echo
head -n 2 "$OUT/table.md"
tail -n +3 "$OUT/table.md" | cut -d '|' -f 1-4,6-7 | sed 's/$/|/'   # family, model, bits/dim, parameters, seconds
echo
echo "Each bound and published reference: $OUT/table.md"
echo "Samples of the four families side by side: $OUT/figures/samples_side_by_side.png"
echo "The report, open it in a browser: $URL"
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] || [ "$(uname)" = Darwin ]; then
  .venv/bin/python -m webbrowser -t "$URL" > /dev/null 2>&1 || true
fi
echo
echo "To type \`genlab\` without the .venv/bin/ prefix, put it on your PATH in this shell:"
echo "  source .venv/bin/activate"
echo "then, e.g.:"
echo "  genlab train vae --data digits --epochs 40 --out runs/vae   # one model, all its figures and test metrics"
echo "  genlab experiment list                                       # the classic experiments"
echo "  notebooks/                                                   # one notebook per family (Python API)"
