"""Market-1501 at 128x64 (the paper, Sec. 4.1; docs/data.md)."""

from configs import base


def get_config():
    c = base.get_config()
    c.data.name = "market"
    c.data.root = "data/market"
    c.data.train_images = "bounding_box_train"
    c.data.test_images = "bounding_box_test"
    c.data.annotations_train = "market-annotation-train.csv"
    c.data.annotations_test = "market-annotation-test.csv"
    c.data.pairs_test = "market-pairs-test.csv"
    c.data.pairs_train = "market-pairs-train.csv"
    c.data.identities = ""
    c.data.height, c.data.width = 128, 64
    c.train.batch_size = 16
    c.loss.lambda_pose = 1.0
    c.loss.lambda_cont = 0.003
    c.model.face_crop_size = 0  # no face loss on Market-1501
    return c
