#!/usr/bin/env bash
# Run the same livecell-seg commands with two source trees and report the output files that differ
# (a refactoring must leave every output byte-identical).
#
#   scripts/compare_outputs.sh BASE NEW [WORK]     # BASE, NEW: a source tree (a folder with
#                                                 # src/livecell_seg) or a commit of this repository
#   scripts/compare_outputs.sh --run TREE OUT      # only write TREE's outputs into OUT
#   scripts/compare_outputs.sh --check OUT1 OUT2   # only compare two output folders
#
# Environment: PYTHON (default: python), FRAMES (time-lapse frames for timecourse; default 5 SkBr3
# frames of ../shared/livecell-unlabeled, skipped when missing), SKIP_BIOIMAGEIO=1 (skip that export),
# THREADS (network threads, default 1). Inputs (the sample images and model, copied from BASE; a
# 2x2 mosaic of a sample image, 1408 x 1040, so that predict tiles it) are the same files for both
# trees, and every command runs in OUT with relative paths, so that no output differs by a path.
# Outputs of both trees go to WORK (default: a new temporary folder); zips are compared member by
# member (a zip's own bytes hold file times). scripts/compare_outputs.py compares them: files whose
# bytes differ must differ only in run durations or in where torch says the code came from.
set -euo pipefail
PY=${PYTHON:-python}
THREADS=${THREADS:-1}
HERE=$(cd "$(dirname "$0")/.." && pwd)

tree_of() {  # a source tree for $1 (folder or commit) under $2
    if [ -d "$1/src/livecell_seg" ]; then
        (cd "$1" && pwd)
    else
        mkdir -p "$2"
        git -C "$HERE" archive "$1" | tar -x -C "$2"
        echo "$2"
    fi
}

make_inputs() {  # $1 tree, $2 inputs folder
    local tree=$1 in=$2
    [ -d "$in" ] && return 0
    mkdir -p "$in"
    cp -r "$tree/src/livecell_seg/sample_data" "$in/sample"
    cp -r "$tree/src/livecell_seg/models/default" "$in/model"
    rm -f "$in/model/model.onnx"
    mkdir -p "$in/large" "$in/frames"
    PYTHONPATH="$tree/src" "$PY" - "$in" <<'EOF'
import sys
from pathlib import Path
import numpy as np
import tifffile
from livecell_seg.io import list_images, read_image
inp = Path(sys.argv[1])
img = read_image(list_images(inp / "sample" / "images")[0])
tifffile.imwrite(inp / "large" / "mosaic.tif", np.block([[img, img[:, ::-1]], [img[::-1], img[::-1, ::-1]]]))
EOF
    local frames=${FRAMES:-$(ls "$HERE"/../shared/livecell-unlabeled/SkBr3_Phase_H3_2_*_1.tif 2>/dev/null | head -5 || true)}
    for f in $frames; do cp "$f" "$in/frames/"; done
}

run_tree() {  # $1 tree, $2 output folder (holding or next to ../inputs)
    local tree=$1 out=$2
    mkdir -p "$out"
    cd "$out"
    local in=../inputs
    lc() { echo "+ livecell-seg $*" >&2; PYTHONPATH="$tree/src" LIVECELL_SEG_CACHE="$out/cache" nice -n 10 "$PY" -m livecell_seg "$@"; }
    local common=(--model $in/model --device cpu --threads "$THREADS" --quiet)
    lc predict --input $in/sample/images --out pred --save-maps --overlay --csv --rois --geojson --scale 1 "${common[@]}"
    lc predict --input $in/sample/images --out pred_auto --csv "${common[@]}"
    lc predict --input $in/large --out pred_tiled --save-maps --scale 1 "${common[@]}"
    lc predict --input $in/sample/images --out pred_onnx --save-maps --scale 1 --backend onnxruntime "${common[@]}"
    lc evaluate --gt $in/sample/livecell_coco_val.json --pred pred --images $in/sample/images \
        --json-out metrics.json --report eval_report --quiet
    lc eda --json $in/sample/livecell_coco_val.json --images $in/sample/images --out eda --png --no-progress
    lc timecourse --input $in/sample/images --labels pred --out tc_labels --overlay --quiet
    if [ -n "$(ls $in/frames)" ]; then
        lc timecourse --input $in/frames --out tc_frames --overlay "${common[@]}"
    fi
    lc export --model $in/model --format onnx --out export/model.onnx
    if [ "${SKIP_BIOIMAGEIO:-0}" != 1 ]; then
        lc export --model $in/model --format bioimageio --out export/package.zip
        mkdir -p export/package.unzipped && (cd export/package.unzipped && unzip -q ../package.zip)
    fi
    rm -rf cache
    cd - >/dev/null
}

if [ "${1:-}" = --check ]; then
    exec "$PY" "$HERE/scripts/compare_outputs.py" "$2" "$3"
fi
if [ "${1:-}" = --run ]; then
    tree=$(tree_of "$2" "$(mktemp -d)/tree")
    out=$(mkdir -p "$3" && cd "$3" && pwd)
    make_inputs "$tree" "$out/../inputs"
    run_tree "$tree" "$out"
    exit 0
fi

[ $# -ge 2 ] || { sed -n 2,16p "$0"; exit 2; }
WORK=${3:-$(mktemp -d /tmp/compare-outputs.XXXXXX)}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
base=$(tree_of "$1" "$WORK/tree-base")
new=$(tree_of "$2" "$WORK/tree-new")
make_inputs "$base" "$WORK/inputs"
run_tree "$base" "$WORK/base"
run_tree "$new" "$WORK/new"
echo "outputs in $WORK/base and $WORK/new"
PYTHONPATH="$new/src" "$PY" "$HERE/scripts/compare_outputs.py" "$WORK/base" "$WORK/new"
