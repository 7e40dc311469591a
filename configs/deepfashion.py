"""DeepFashion at 256x256: joint at 128, then the progressive 256 stage."""

from configs import base


def get_config():
    c = base.get_config()
    c.data.name = "deepfashion"
    c.data.root = "data/deepfashion"
    c.data.annotations_train = "fasion-resize-annotation-train.csv"
    c.data.annotations_test = "fasion-resize-annotation-test.csv"
    c.data.pairs_test = "fasion-resize-pairs-test.csv"
    c.data.pairs_train = "fasion-resize-pairs-train.csv"
    c.data.identities = ""
    c.data.height, c.data.width = 256, 256
    c.model.progressive = True
    c.train.batch_size = 4
    c.loss.lambda_pose = 700.0
    c.loss.lambda_cont = 0.03
    # 256x256 evaluation of these networks in batches of 4 keeps a CPU run of the
    # 12,000 test pairs under 4 GB (docs/benchmarks.md, "Evaluator"); 8 peaks at 4.1 GB.
    c.eval.batch_size = 4
    return c
