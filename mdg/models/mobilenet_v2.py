"""MobileNetV2 classifier of the DCASE 2022 Task 2 baseline, in Flax NNX.

The baseline (``keras.applications.MobileNetV2(alpha=0.5, weights=None)``) classifies log-Mel
patches (64 frames x 128 mels) by section/attribute; the anomaly score comes from its logits or
from the pooled embedding. This module rebuilds that network layer for layer:

- first conv 3x3 stride 2 with ``make_divisible(32 * alpha)`` channels, BN, ReLU6;
- the inverted-residual stages of Sandler et al. (2018), table 2, rows (t, c, n, s):
  (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
  (6, 320, 1, 1); block = [1x1 expand conv, BN, ReLU6] (absent when t = 1), 3x3 depthwise conv
  with the stage's stride on its first block, BN, ReLU6, linear 1x1 projection conv, BN, and an
  identity shortcut when the stride is 1 and the channel count is unchanged. Block output channels
  are ``make_divisible(int(c * alpha))``; expanded channels are t x the block's input channels;
- last 1x1 conv with 1280 channels, BN, ReLU6; as in Keras, alpha scales it only when alpha > 1;
- global average pooling -> embedding; a Dense head with bias -> ``num_classes`` logits (Keras puts
  a softmax on the head; we return logits and apply softmax in the loss). ``head="cosine"``
  replaces the Dense layer by learnable class centres (``num_subclusters`` per class) for the
  margin losses of the domain-generalization ablations (:mod:`mdg.models.heads`).

Convolutions have no bias (BN follows) and glorot-uniform kernels, as in Keras. Padding is TF
"SAME" everywhere. Keras pads stride-2 convs with ``ZeroPadding2D(correct_pad(...))`` + "valid" in
some versions and uses "same" in others; for a 3x3 kernel at stride 2 both give (0, 1) zero padding
on even sizes and (1, 1) on odd sizes, exactly what XLA's "SAME" does, so the three agree.
BatchNorm uses Keras's MobileNetV2 settings, momentum 0.999 and epsilon 1e-3 (Keras and Flax share
the momentum convention ``running = momentum * running + (1 - momentum) * batch``). The depthwise,
1x1 and BN layers are those of ``mdg.models.layers`` (1x1 kernels are stored as ``(in, out)``
matrices rather than ``(1, 1, in, out)``); ``conv_impl`` picks their CPU-tuned or native form.
Mixed precision: ``dtype`` is the computation dtype of every convolution; the parameters stay
float32, BatchNorm statistics are float32, and the embedding, the head and the logits are float32
(the margin losses' cosines and angles need the precision).

Input channels: the Keras baseline tiled the single log-Mel channel to 3 channels only to fit the
ImageNet input shape. There are no pretrained weights to match here (the baseline trained from
scratch with ``weights=None``), so the network takes 1 channel, which drops 2 x 9 x first-conv
channels of redundant parameters and the tiling copy. ``in_channels`` is configurable (e.g. 3 to
reproduce the Keras parameter count exactly).

Mode follows the NNX convention: built in training mode; ``model.eval()`` (or ``nnx.view(model,
use_running_average=True)``) uses the BN running averages, ``model.train()`` switches back.
"""
from flax import nnx
import jax
import jax.numpy as jnp

from mdg.models.heads import make_head
from mdg.models.layers import DepthwiseConv, FusedBatchNorm, PointwiseConv, compute_dtype

# (expansion t, channels c, repeats n, first stride s) per stage, Sandler et al. (2018), table 2.
INVERTED_RESIDUAL_STAGES: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
FIRST_CONV_CHANNELS = 32
LAST_CONV_CHANNELS = 1280
KERAS_BN_MOMENTUM = 0.999
KERAS_BN_EPSILON = 1e-3


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to the nearest multiple of ``divisor``, never below ``divisor`` and
    never more than 10 % below ``value`` (the rule of the MobileNet reference implementations)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class ConvBN(nnx.Module):
    """Bias-free conv -> BatchNorm (-> ReLU6 if ``activate``) on NHWC input; output in ``dtype``.

    ``kind`` selects the conv: "full" (``nnx.Conv``, k x k over all input channels; the stem),
    "depthwise" (``DepthwiseConv``, k x k per channel; ``in_channels == out_channels``) or
    "pointwise" (``PointwiseConv``, 1 x 1; ``kernel_size`` is ignored). ``conv_impl`` and ``dtype``
    go to the conv (see ``mdg.models.layers``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kind: str,
        *,
        kernel_size: int = 3,
        stride: int = 1,
        activate: bool = True,
        bn_momentum: float,
        bn_epsilon: float,
        conv_impl: str = "auto",
        dtype="float32",
        rngs: nnx.Rngs,
    ):
        conv = dict(conv_impl=conv_impl, dtype=dtype, rngs=rngs)
        if kind == "full":
            self.conv = nnx.Conv(in_channels, out_channels, (kernel_size, kernel_size),
                                 strides=stride, padding="SAME", use_bias=False,
                                 kernel_init=nnx.initializers.glorot_uniform(),
                                 dtype=compute_dtype(dtype), rngs=rngs)
        elif kind == "depthwise":
            if in_channels != out_channels:
                raise ValueError(f"ConvBN: depthwise conv needs in_channels == out_channels, "
                                 f"got {in_channels} and {out_channels}")
            self.conv = DepthwiseConv(in_channels, kernel_size, stride=stride, **conv)
        elif kind == "pointwise":
            self.conv = PointwiseConv(in_channels, out_channels, **conv)
        else:
            raise ValueError(f"ConvBN: kind must be full, depthwise or pointwise, got {kind!r}")
        self.norm = FusedBatchNorm(out_channels, momentum=bn_momentum, epsilon=bn_epsilon,
                                   rngs=rngs)
        self.activate = activate

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.norm(self.conv(x))
        return nnx.relu6(x) if self.activate else x


class InvertedResidual(nnx.Module):
    """Inverted residual block: ``(batch, H, W, in_channels)`` ->
    ``(batch, ceil(H / stride), ceil(W / stride), out_channels)``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int,
        expansion: int,
        bn_momentum: float,
        bn_epsilon: float,
        conv_impl: str = "auto",
        dtype="float32",
        rngs: nnx.Rngs,
    ):
        bn = dict(bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, conv_impl=conv_impl,
                  dtype=dtype, rngs=rngs)
        hidden = in_channels * expansion
        self.expand = ConvBN(in_channels, hidden, "pointwise", **bn) if expansion != 1 else None
        self.depthwise = ConvBN(hidden, hidden, "depthwise", stride=stride, **bn)
        self.project = ConvBN(hidden, out_channels, "pointwise", activate=False, **bn)
        self.residual = stride == 1 and in_channels == out_channels

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return x + y if self.residual else y


class MobileNetV2(nnx.Module):
    """MobileNetV2 on log-Mel patches; ``__call__`` returns ``(logits, embedding)``.

    A classifier (``KIND``); :meth:`outputs` gives ``logits`` and ``embedding``, and ``self.head``
    is the head (its centres and scale are what the margin losses use).

    Args:
      num_classes: number of output classes (sections x attribute groups in the baseline).
      alpha: width multiplier (0.5 in the DCASE baseline).
      in_channels: input channels; 1 for log-Mel patches (see module docstring).
      bn_momentum: BatchNorm running-average decay (Keras/Flax convention).
      bn_epsilon: BatchNorm variance offset.
      head: "linear" (the baseline) or "cosine" (class centres, see :mod:`mdg.models.heads`).
      num_subclusters: centres per class of the cosine head.
      head_scale: initial logit scale of the cosine head.
      conv_impl: depthwise and 1x1 convolutions: "cpu_tuned" (shifted multiply-adds, custom
        gradients), "native" (XLA's grouped convolution, plain matmul) or "auto" (cpu_tuned on
        the CPU backend, native elsewhere; see ``mdg.models.layers.resolve_conv_impl``).
      dtype: computation dtype of the convolutions ("float32" or "bfloat16"); parameters, the
        head (cosines and margins need float32) and the outputs stay float32.
      rngs: random streams for parameter initialization.
    """

    KIND = "classifier"
    OUTPUTS = ("logits", "embedding")

    def __init__(
        self,
        num_classes: int,
        alpha: float = 0.5,
        in_channels: int = 1,
        bn_momentum: float = KERAS_BN_MOMENTUM,
        bn_epsilon: float = KERAS_BN_EPSILON,
        head: str = "linear",
        num_subclusters: int = 1,
        head_scale: float = 30.0,
        conv_impl: str = "auto",
        dtype="float32",
        *,
        rngs: nnx.Rngs,
    ):
        for name, value in [("num_classes", num_classes), ("alpha", alpha),
                            ("in_channels", in_channels)]:
            if value <= 0:
                raise ValueError(f"MobileNetV2: {name} must be positive, got {value}")
        bn = dict(bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, conv_impl=conv_impl,
                  dtype=dtype, rngs=rngs)
        self.in_channels = in_channels
        channels = make_divisible(FIRST_CONV_CHANNELS * alpha)
        self.stem = ConvBN(in_channels, channels, "full", stride=2, **bn)
        blocks = []
        for expansion, base_channels, repeats, first_stride in INVERTED_RESIDUAL_STAGES:
            out_channels = make_divisible(int(base_channels * alpha))
            for index in range(repeats):
                blocks.append(InvertedResidual(
                    channels, out_channels, stride=first_stride if index == 0 else 1,
                    expansion=expansion, **bn,
                ))
                channels = out_channels
        self.blocks = nnx.List(blocks)
        self.embedding_dim = (
            make_divisible(LAST_CONV_CHANNELS * alpha) if alpha > 1.0 else LAST_CONV_CHANNELS
        )
        self.head_conv = ConvBN(channels, self.embedding_dim, "pointwise", **bn)
        self.head = make_head(head, self.embedding_dim, num_classes, num_subclusters, head_scale, rngs)

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Classify log-Mel patches.

        Args:
          x: float32 ``(batch, frames, mels, in_channels)``, or ``(batch, frames, mels)`` when
            ``in_channels`` is 1.

        Returns:
          ``(logits, embedding)``: float32 ``(batch, num_classes)`` unnormalized class scores and
          ``(batch, embedding_dim)`` globally average-pooled features after the last conv (1280 for
          alpha <= 1).
        """
        outputs = self.outputs(x)
        return outputs["logits"], outputs["embedding"]

    def outputs(self, x: jax.Array) -> dict[str, jax.Array]:
        """``{"logits": (batch, num_classes), "embedding": (batch, embedding_dim)}`` (see ``__call__``)."""
        if x.ndim == 3 and self.in_channels == 1:
            x = x[..., None]
        if x.ndim != 4 or x.shape[-1] != self.in_channels:
            alternative = " or (batch, frames, mels)" if self.in_channels == 1 else ""
            raise ValueError(f"MobileNetV2: expected input of shape (batch, frames, mels, "
                             f"{self.in_channels}){alternative}, got {x.shape}")
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        embedding = jnp.mean(self.head_conv(x).astype(jnp.float32), axis=(1, 2))
        return {"logits": self.head(embedding), "embedding": embedding}
