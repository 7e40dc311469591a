"""DeepFashion at 256x176: the field's protocol (PATN / GFLA split, resized annotations).

The papers after SPT (PATN, GFLA, and most since) train and evaluate on
DeepFashion In-shop photos resized to 256x176 (the 256x256 photo with 40 pixels
cut from each side), with the split of PATN: ``train.lst`` / ``test.lst``
(48,674 / 4,038 images), annotations ``fasion-resize-annotation-{train,test}.csv``
(the field's spelling) in that frame, and pairs
``fasion-resize-pairs-{train,test}.csv`` (8,570 test pairs). Expected layout
under ``data.root`` (docs/data.md, "DeepFashion at 256x176"): ``train/`` and
``test/`` holding the resized photos of each list, ``parsing/`` the parsing
maps, and the CSVs above. Everything else is the paper's DeepFashion config
(``configs/deepfashion.py``); every network runs at 256x176 (the U-Nets pad the
width to their stride and crop back).
"""

from configs import deepfashion


def get_config():
    c = deepfashion.get_config()
    c.data.name = "deepfashion176"
    c.data.root = "data/deepfashion176"
    c.data.height, c.data.width = 256, 176
    c.data.annotations_train = "fasion-resize-annotation-train.csv"
    c.data.annotations_test = "fasion-resize-annotation-test.csv"
    c.data.pairs_train = "fasion-resize-pairs-train.csv"
    c.data.pairs_test = "fasion-resize-pairs-test.csv"
    # The field's resize rule (x - 40, nothing clipped) leaves points up to 40 px outside
    # [0, 175]; they are the field's standard input and are kept as they are
    # (spt_tf.data.formats.DEEPFASHION_176_TOLERANCE, docs/data.md).
    c.data.keypoint_tolerance = 40.0
    return c
