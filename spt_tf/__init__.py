"""spt_tf: unsupervised pose-guided person image generation with semantic
parsing transformation (Song et al., CVPR 2019) in TensorFlow 2.21 / Keras 3."""

__version__ = "0.1.0"
