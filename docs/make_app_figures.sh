#!/usr/bin/env bash
# Regenerates the figures of docs/applications.md from a SavedModel and the demo's data:
#   bash docs/make_app_figures.sh [MODEL] [DATA] [OUT]
# (defaults: runs/demo/export runs/demo/data /tmp/apps_figs). The person ids are test
# identities of the data `make demo` writes (spt_tf/demo_run.py: 300 identities x 6 poses,
# seed 0, 20 % test).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-runs/demo/export} DATA=${2:-runs/demo/data} OUT=${3:-/tmp/apps_figs}
PY=${PYTHON:-.venv/bin/python}
A="$PY -m spt_tf.apps"; CSV=$DATA/annotation-test.csv
$A pose-transfer --model $MODEL --image $DATA/test/id00026_p02.png --parsing $DATA/parsing/id00026_p02.png \
    --keypoints_csv $CSV --target_image $DATA/test/id00005_p00.png --out $OUT/pose
$A texture-transfer --model $MODEL --image $DATA/test/id00027_p01.png --parsing $DATA/parsing/id00027_p01.png \
    --target_image $DATA/test/id00003_p01.png --target_parsing $DATA/parsing/id00003_p01.png \
    --keypoints_csv $CSV --out $OUT/texture
$A edit --model $MODEL --image $DATA/test/id00019_p01.png --parsing $DATA/parsing/id00019_p01.png \
    --keypoints_csv $CSV --sleeves long --lower skirt --out $OUT/edit_long_skirt
$A edit --model $MODEL --image $DATA/test/id00005_p00.png --parsing $DATA/parsing/id00005_p00.png \
    --keypoints_csv $CSV --sleeves none --lower pants --out $OUT/edit_none_pants
# The custom photo: a test person at 2x, padded to 128 x 112, BODY_25 JSON, LIP labels.
$PY - "$DATA" "$OUT/custom_inputs" <<'PY'
import json, os, sys
import cv2, numpy as np
from spt_tf import labels
from spt_tf.data import formats
data, out = sys.argv[1:]
os.makedirs(out, exist_ok=True)
name = "id00026_p02.png"
img = cv2.resize(formats.read_image(f"{data}/test/{name}"), (64, 128), interpolation=cv2.INTER_NEAREST)
formats.write_image(f"{out}/photo.png", cv2.copyMakeBorder(img, 0, 0, 24, 24, cv2.BORDER_REPLICATE))
to_lip = [labels.LIP_LABELS.index(n) for n in labels.SPT_LABELS]  # the same names in LIP
lab = cv2.resize(formats.read_parsing(f"{data}/parsing/{name}"), (64, 128), interpolation=cv2.INTER_NEAREST)
formats.write_parsing(f"{out}/photo_lip.png", np.asarray(to_lip, np.uint8)[np.pad(lab, ((0, 0), (24, 24)))])
kp0 = formats.read_annotations(f"{data}/annotation-test.csv")[name]
kp = np.where(kp0 < 0, -1, kp0 * 2 + [0, 24])  # (y, x) in the photo
coco_to_body25 = [0, 1, 2, 3, 4, 5, 6, 7, None, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17] + [None] * 6
flat = []
for j in coco_to_body25:
    ok = j is not None and kp[j, 0] >= 0
    flat += [float(kp[j, 1]), float(kp[j, 0]), 0.9] if ok else [0.0, 0.0, 0.0]
json.dump({"version": 1.3, "people": [{"pose_keypoints_2d": flat}]}, open(f"{out}/photo_keypoints.json", "w"))
PY
$A pose-transfer --model $MODEL --image $OUT/custom_inputs/photo.png --lip_parsing $OUT/custom_inputs/photo_lip.png \
    --openpose_json $OUT/custom_inputs/photo_keypoints.json --keypoints_csv $CSV \
    --target_image $DATA/test/id00028_p01.png --out $OUT/custom
for f in pose:pose_transfer texture:texture_transfer edit_long_skirt:edit_long_skirt \
         edit_none_pants:edit_none_pants custom:custom_photo; do
  cp $OUT/${f%%:*}/figure.png docs/figures/apps_${f##*:}.png
done
