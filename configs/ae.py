"""DCASE 2022/2023 Task 2 autoencoder baseline.

Variants (``--config configs/ae.py:VARIANT``):
  (none)  the paper's model and training settings on a synthetic dataset sized for a 2-core CPU
  full    full-size synthetic dataset (990 + 10 train, 200 test clips per section)
  tiny    seconds-long smoke run (tests)
Option ``mixup`` (e.g. ``:tiny,mixup``): mixup of the input vectors, alpha 1 (Zhang et al. 2018).
Real data: ``--config.data.root=/path/to/dev_data``.
"""

from mdg import config_defaults


def get_config(variant: str = ""):
    size, options = config_defaults.split_variant(variant, ("default", "full", "tiny"), ("mixup",), "configs/ae.py")
    c = config_defaults.base_config()
    c.model.name = "autoencoder"
    c.model.input_dim = 640
    c.model.hidden_dim = 128
    c.model.num_hidden_layers = 4
    c.model.bottleneck_dim = 8

    c.input.window = 5
    c.input.train_hop = 1
    c.input.eval_hop = 1
    c.input.flatten = True

    c.train.loss = "mse"
    c.train.learning_rate = 1e-3
    c.train.num_epochs = 100
    c.train.batch_size = 256
    c.eval.scores = "mse,mahalanobis"

    if size == "default":
        config_defaults.small_synthetic(c)
    elif size == "tiny":
        config_defaults.tiny_run(c, batch_size=64, eval_batch_size=512)
        c.model.hidden_dim = 32
        c.model.num_hidden_layers = 2
        c.model.bottleneck_dim = 4
    if "mixup" in options:
        c.train.mixup_alpha = 1.0
    return c
