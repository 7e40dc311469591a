"""Tiny shapes for the test suite (CPU, seconds)."""

from configs import base


def get_config():
    c = base.get_config()
    c.data.name = "testing"
    c.data.root = "/tmp/spt_testing_data"
    c.data.height, c.data.width = 32, 16
    c.data.sigma = 2.0
    c.data.mask_radius = 1.5
    c.data.shuffle_buffer = 16
    c.data.deterministic = True
    c.data.xla_geometry = False  # compile time dominates at test sizes
    c.model.width_multiplier = 0.125
    c.model.dropout = 0.0
    c.model.deformable_levels = 2
    c.model.d_layers = 2
    c.model.d_filters = 8
    c.model.face_crop_size = 8
    c.model.pose_blocks = 1
    c.model.pose_filters = 8
    c.model.parser_width_multiplier = 0.125
    c.model.vgg_weights = ""
    c.train.batch_size = 4
    c.train.pose_detector_steps = 2
    c.train.semantic_steps = 2
    c.train.appearance_steps = 2
    c.train.joint_steps = 2
    c.train.progressive_local_steps = 2
    c.train.progressive_all_steps = 2
    c.train.parser_steps = 2
    c.train.fade_steps = 2
    c.train.checkpoint_every = 1
    c.train.log_every = 1
    c.train.image_every = 1
    c.train.xla = "off"
    # Two steps of P find no joint: the tests run every loss anyway, shapes not quality.
    c.train.min_pose_pckh = 0.0
    c.eval.batch_size = 4
    c.eval.inception_weights = ""
    c.eval.is_splits = 2
    return c
