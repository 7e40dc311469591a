"""The bundled synthetic people (the demo): small widths, short schedule."""

from configs import base


def get_config():
    c = base.get_config()
    c.data.name = "synthetic"
    c.data.root = "runs/demo/data"
    c.data.height, c.data.width = 64, 32
    c.data.sigma = 3.0
    c.data.mask_radius = 2.0
    c.model.width_multiplier = 0.25
    c.model.dropout = 0.0
    c.model.face_crop_size = 16
    c.model.pose_blocks = 3
    c.model.pose_filters = 16
    c.model.parser_width_multiplier = 0.25
    c.model.vgg_weights = ""  # no download on the demo machine; logged loudly
    c.loss.lambda_pose = 10.0
    c.loss.lambda_cont = 0.03
    # No ImageNet VGG offline: the content/style losses see random features, so the
    # cycle also gets a pixel L1 (configs/base.py, loss.lambda_cycle).
    c.loss.lambda_cycle = 10.0
    c.model.d_filters = 32
    c.train.batch_size = 8
    c.train.pose_detector_steps = 150
    c.train.semantic_steps = 250
    c.train.appearance_steps = 500
    c.train.joint_steps = 200
    c.train.parser_steps = 300
    c.train.checkpoint_every = 100
    c.train.log_every = 10
    c.train.image_every = 100
    c.eval.batch_size = 32
    c.eval.inception_weights = ""
    return c
