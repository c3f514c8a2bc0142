"""Dense autoencoder of the DCASE 2022/2023 Task 2 baseline, in Flax NNX.

Input vectors are 5 consecutive log-Mel frames (128 mels each) flattened frame-major to 640 values.
The baseline network (Keras in 2022, PyTorch in 2023, same shape) is

    encoder:    [Dense(128) -> BN -> ReLU] x 4, Dense(8) -> BN -> ReLU   (bottleneck)
    decoder:    [Dense(128) -> BN -> ReLU] x 4, Dense(640)               (linear output)

with biases on every Dense layer: 267,928 trainable parameters, plus 2 x 1,032 BatchNorm
statistics. Sizes are constructor arguments so configs and ablations can change them; the defaults
are the baseline.

Initialization follows the 2022 Keras baseline defaults (glorot-uniform kernels, zero biases; BN
scale 1, offset 0). The 2023 PyTorch baseline used torch's default Linear init instead; we follow
Keras so the model starts where the original did.

BatchNorm is ``nnx.BatchNorm`` with a leaner gradient (``mdg.models.layers.FusedBatchNorm``).
Mixed precision: ``dtype`` is the computation dtype of the Dense layers; parameters stay float32,
BatchNorm statistics are float32, and code and reconstruction are returned in float32.
Momentum: Keras and Flax use the same convention,
``running = momentum * running + (1 - momentum) * batch_statistic``, so Keras ``momentum=0.99`` is
Flax ``momentum=0.99`` (PyTorch writes the same thing as ``momentum=0.01``, the weight of the new
batch). Keras ``epsilon=1e-3`` differs from Flax's default ``1e-5`` and is passed explicitly. Like
Keras, the running variance averages the biased batch variance (PyTorch uses the unbiased one).

Mode follows the NNX convention: modules are built in training mode (batch statistics used and the
running averages updated on every call); ``model.eval()`` (or ``nnx.view(model,
use_running_average=True)``) switches BN to the running averages, ``model.train()`` switches back.
"""
from flax import nnx
import jax

import jax.numpy as jnp

from mdg.models.layers import FusedBatchNorm, compute_dtype

# Keras BatchNormalization defaults used by the baseline (see module docstring for the mapping).
KERAS_BN_MOMENTUM = 0.99
KERAS_BN_EPSILON = 1e-3


class DenseBlock(nnx.Module):
    """Dense -> BatchNorm -> ReLU: ``(batch, in_features)`` -> ``(batch, out_features)`` in
    ``dtype``."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bn_momentum: float,
        bn_epsilon: float,
        dtype,
        rngs: nnx.Rngs,
    ):
        self.dense = nnx.Linear(
            in_features, out_features, kernel_init=nnx.initializers.glorot_uniform(),
            dtype=dtype, rngs=rngs
        )
        self.norm = FusedBatchNorm(
            out_features, momentum=bn_momentum, epsilon=bn_epsilon, rngs=rngs
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        return nnx.relu(self.norm(self.dense(x)))


class AutoEncoder(nnx.Module):
    """Baseline dense autoencoder; ``__call__`` maps ``(batch, input_dim)`` to its reconstruction.

    A reconstruction model (``KIND``); :meth:`outputs` gives ``reconstruction`` and ``embedding``
    (the bottleneck code, the clip-level representation that embedding scores use).

    Args:
      input_dim: length of an input vector (frames x mels; 5 x 128 = 640 in the baseline).
      hidden_dim: width of the hidden Dense layers on each side of the bottleneck.
      num_hidden_layers: hidden Dense-BN-ReLU blocks in the encoder, and again in the decoder.
      bottleneck_dim: width of the code layer (itself Dense-BN-ReLU, as in the baseline).
      bn_momentum: running-average decay of BatchNorm (Keras/Flax convention, see module docstring).
      bn_epsilon: variance offset of BatchNorm.
      dtype: computation dtype of the Dense layers ("float32" or "bfloat16"); parameters stay
        float32 and outputs are float32.
      rngs: random streams for parameter initialization.
    """

    KIND = "reconstruction"
    OUTPUTS = ("reconstruction", "embedding")

    def __init__(
        self,
        input_dim: int = 640,
        hidden_dim: int = 128,
        num_hidden_layers: int = 4,
        bottleneck_dim: int = 8,
        bn_momentum: float = KERAS_BN_MOMENTUM,
        bn_epsilon: float = KERAS_BN_EPSILON,
        dtype="float32",
        *,
        rngs: nnx.Rngs,
    ):
        for name, value in [("input_dim", input_dim), ("hidden_dim", hidden_dim),
                            ("num_hidden_layers", num_hidden_layers),
                            ("bottleneck_dim", bottleneck_dim)]:
            if value < 1:
                raise ValueError(f"AutoEncoder: {name} must be a positive integer, got {value}")
        self.input_dim = input_dim
        dtype = compute_dtype(dtype)
        bn = dict(bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, dtype=dtype, rngs=rngs)
        encoder_widths = [input_dim] + [hidden_dim] * num_hidden_layers + [bottleneck_dim]
        decoder_widths = [bottleneck_dim] + [hidden_dim] * num_hidden_layers
        self.encoder = nnx.List([
            DenseBlock(din, dout, **bn) for din, dout in zip(encoder_widths, encoder_widths[1:])
        ])
        self.decoder = nnx.List([
            DenseBlock(din, dout, **bn) for din, dout in zip(decoder_widths, decoder_widths[1:])
        ])
        self.output = nnx.Linear(
            hidden_dim, input_dim, kernel_init=nnx.initializers.glorot_uniform(), dtype=dtype,
            rngs=rngs
        )

    def encode(self, x: jax.Array) -> jax.Array:
        """``(batch, input_dim)`` -> float32 code ``(batch, bottleneck_dim)`` (after its ReLU)."""
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ValueError(
                f"AutoEncoder: expected input of shape (batch, {self.input_dim}), got {x.shape}"
            )
        for block in self.encoder:
            x = block(x)
        return x.astype(jnp.float32)

    def decode(self, code: jax.Array) -> jax.Array:
        """Bottleneck code ``(batch, bottleneck_dim)`` -> float32 reconstruction
        ``(batch, input_dim)``."""
        for block in self.decoder:
            code = block(code)
        return self.output(code).astype(jnp.float32)

    def __call__(self, x: jax.Array) -> jax.Array:
        """float32 ``(batch, input_dim)`` log-Mel vectors -> reconstruction of the same shape."""
        return self.decode(self.encode(x))

    def outputs(self, x: jax.Array) -> dict[str, jax.Array]:
        """``{"reconstruction": (batch, input_dim), "embedding": (batch, bottleneck_dim)}``."""
        code = self.encode(x)
        return {"reconstruction": self.decode(code), "embedding": code}
