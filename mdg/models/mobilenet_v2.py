"""MobileNetV2 classifier of the DCASE 2022 Task 2 baseline, in Flax NNX.

The baseline (``keras.applications.MobileNetV2(alpha=0.5, weights=None)``) classifies log-Mel patches
(64 frames x 128 mels) by section/attribute; the anomaly score comes from its logits or from the
pooled embedding. This module rebuilds that network layer for layer:

- first conv 3x3 stride 2 with ``_make_divisible(32 * alpha)`` channels, BN, ReLU6;
- the inverted-residual stages of Sandler et al. (2018), table 2, rows (t, c, n, s):
  (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
  (6, 320, 1, 1); block = [1x1 expand conv, BN, ReLU6] (absent when t = 1), 3x3 depthwise conv with
  the stage's stride on the first block, BN, ReLU6, linear 1x1 projection conv, BN, and an identity
  shortcut when the stride is 1 and the channel count is unchanged. Block output channels are
  ``_make_divisible(int(c * alpha))``; expanded channels are t x the block's input channels;
- last 1x1 conv with 1280 channels, BN, ReLU6; as in Keras, alpha scales it only when alpha > 1;
- global average pooling -> embedding; a Dense head with bias -> ``num_classes`` logits (Keras puts
  a softmax on the head; we return logits and apply softmax in the loss).

Convolutions have no bias (BN follows), kernels are glorot-uniform as in Keras. Padding is TF
"SAME" everywhere. Keras pads stride-2 convs with ``ZeroPadding2D(correct_pad(...))`` + "valid" in
some versions and uses "same" in others; for a 3x3 kernel at stride 2 both give (0, 1) zero padding
on even sizes and (1, 1) on odd sizes, which is exactly what XLA's "SAME" does, so the three agree.
BatchNorm uses Keras's MobileNetV2 settings, momentum 0.999 and epsilon 1e-3 (Keras and Flax share
the momentum convention ``running = momentum * running + (1 - momentum) * batch``).

Input channels: the Keras baseline tiled the single log-Mel channel to 3 channels only to fit the
ImageNet input shape. There are no pretrained weights to match here (the baseline trained from
scratch with ``weights=None``), so the network takes 1 channel, which removes 2 x 9 x first-conv
channels of redundant parameters and the tiling copy. ``in_channels`` is configurable (e.g. 3 to
reproduce the Keras parameter count exactly).

Mode follows the NNX convention: built in training mode; ``model.eval()`` (or ``nnx.view(model,
use_running_average=True)``) uses the BN running averages, ``model.train()`` switches back.
"""
import functools

from flax import nnx
import jax
import jax.numpy as jnp

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


def same_padding(size: int, kernel_size: int, stride: int) -> tuple[int, int]:
    """TF/XLA "SAME" zero padding (before, after) of one spatial axis: output ceil(size / stride),
    the odd pixel of padding at the end."""
    total = max((-(-size // stride) - 1) * stride + kernel_size - size, 0)
    return total // 2, total - total // 2


def _pad_same(x: jax.Array, kernel_size: int, stride: int) -> jax.Array:
    _, height, width, _ = x.shape
    return jnp.pad(x, ((0, 0), same_padding(height, kernel_size, stride),
                       same_padding(width, kernel_size, stride), (0, 0)))


def _window(x: jax.Array, i: int, j: int, out_h: int, out_w: int, stride: int) -> jax.Array:
    """x[:, i + stride * h, j + stride * w, :] for h < out_h, w < out_w."""
    batch, _, _, channels = x.shape
    return jax.lax.slice(x, (0, i, j, 0),
                         (batch, i + (out_h - 1) * stride + 1, j + (out_w - 1) * stride + 1,
                          channels), (1, stride, stride, 1))


def _shifted_sum(x: jax.Array, kernel: jax.Array, out_h: int, out_w: int,
                 stride: int) -> jax.Array:
    """sum_ij window_ij(x) * kernel[i, j, 0]: a depthwise correlation of padded ``x``."""
    k = kernel.shape[0]
    return functools.reduce(jnp.add, [_window(x, i, j, out_h, out_w, stride) * kernel[i, j, 0]
                                      for i in range(k) for j in range(k)])


def _sum_rows(x: jax.Array) -> jax.Array:
    """Sum over axis 1 by halving it repeatedly: (b, h, ...) -> (b, ...)."""
    leftover = None
    while x.shape[1] > 1:
        half = x.shape[1] // 2
        if x.shape[1] % 2:
            leftover = x[:, -1] if leftover is None else leftover + x[:, -1]
        x = x[:, :half] + x[:, half:2 * half]
    return x[:, 0] if leftover is None else x[:, 0] + leftover


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def depthwise_conv(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
    """Depthwise correlation with "SAME" padding, as k x k shifted multiply-adds.

    Same result as ``lax.conv_general_dilated(..., feature_group_count=channels)``, but XLA's CPU
    backend runs grouped convolutions as slow generic loops (and their gradients slower still),
    while this form fuses into passes over channel-contiguous NHWC data: ~10x faster forward.
    The hand-written VJP keeps the backward pass fused as well; automatic differentiation of the
    slices would store k x k shifted copies of the input.

    Args:
      x: float ``(batch, height, width, channels)``.
      kernel: ``(k, k, 1, channels)``, the layout of a grouped ``nnx.Conv`` kernel.
      stride: spatial stride, both axes.

    Returns:
      ``(batch, ceil(height / stride), ceil(width / stride), channels)``.
    """
    k = kernel.shape[0]
    _, height, width, _ = x.shape
    return _shifted_sum(_pad_same(x, k, stride), kernel, -(-height // stride),
                        -(-width // stride), stride)


def _depthwise_conv_forward(x, kernel, stride):
    return depthwise_conv(x, kernel, stride), (x, kernel)


def _depthwise_conv_backward(stride, residuals, dy):
    x, kernel = residuals
    k = kernel.shape[0]
    _, height, width, _ = x.shape
    _, out_h, out_w, _ = dy.shape
    (top, bottom), (left, right) = same_padding(height, k, stride), same_padding(width, k, stride)
    # The barriers materialize each padded array once; without them XLA recomputes the padding
    # (and the producer's BN and ReLU6) inside every one of the k x k tap fusions.
    # Input gradient: the output gradient dilated by the stride and padded so that the shifted
    # sum with the flipped kernel lands on the input grid (negative padding crops).
    dy_dilated = jax.lax.optimization_barrier(jax.lax.pad(dy, jnp.zeros((), dy.dtype), (
        (0, 0, 0), (k - 1 - top, k - 1 - bottom, stride - 1),
        (k - 1 - left, k - 1 - right, stride - 1), (0, 0, 0))))
    dx = _shifted_sum(dy_dilated, kernel[::-1, ::-1], height, width, 1)
    # Kernel gradient: each tap's input window times the output gradient, summed over positions.
    # Summing rows by pairwise adds first keeps window, product and most of the sum in one loop
    # fusion; a plain jnp.sum makes XLA copy out every shifted window first (~6x slower).
    x_padded = jax.lax.optimization_barrier(_pad_same(x, k, stride))
    dkernel = jnp.stack([
        jnp.sum(_sum_rows(_window(x_padded, i, j, out_h, out_w, stride) * dy), axis=(0, 1))
        for i in range(k) for j in range(k)
    ])
    return dx, dkernel.reshape(kernel.shape)


depthwise_conv.defvjp(_depthwise_conv_forward, _depthwise_conv_backward)


@jax.custom_vjp
def pointwise_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """1 x 1 convolution as a matmul over the channel axis: ``(..., cin) @ (cin, cout)``.

    The VJP is the usual one, written so that the kernel gradient transposes the narrower of
    input and output gradient; left to itself, XLA's CPU backend transposes the wider one (often
    6x the data) while fusing BatchNorm's backward pass into the copy, ~25 % of a MobileNetV2
    training step.
    """
    return x @ kernel


def _pointwise_conv_forward(x, kernel):
    return x @ kernel, (x, kernel)


def _pointwise_conv_backward(residuals, dy):
    x, kernel = residuals
    x = x.reshape(-1, x.shape[-1])
    dy_rows = dy.reshape(-1, dy.shape[-1])
    if x.shape[1] <= dy_rows.shape[1]:
        dkernel = x.T @ dy_rows
    else:
        dkernel = (dy_rows.T @ x).T
    return dy @ kernel.T, dkernel


pointwise_conv.defvjp(_pointwise_conv_forward, _pointwise_conv_backward)


class PointwiseConv(nnx.Module):
    """Bias-free 1 x 1 conv: ``(..., in_channels)`` -> ``(..., out_channels)``; kernel
    ``(in_channels, out_channels)``, glorot-uniform (Keras's fans for a 1 x 1 conv kernel)."""

    def __init__(self, in_channels: int, out_channels: int, *, rngs: nnx.Rngs):
        self.kernel = nnx.Param(nnx.initializers.glorot_uniform()(
            rngs.params(), (in_channels, out_channels)))

    def __call__(self, x: jax.Array) -> jax.Array:
        return pointwise_conv(x, self.kernel[...])


class DepthwiseConv(nnx.Module):
    """Bias-free depthwise k x k conv, "SAME" padding: ``(batch, H, W, C)`` ->
    ``(batch, ceil(H / stride), ceil(W / stride), C)``. Kernel ``(k, k, 1, C)``, glorot-uniform
    (Keras's fans for its ``(k, k, C, 1)`` depthwise kernel have the same sum, so the same bound)."""

    def __init__(self, channels: int, kernel_size: int, *, stride: int, rngs: nnx.Rngs):
        self.kernel = nnx.Param(nnx.initializers.glorot_uniform()(
            rngs.params(), (kernel_size, kernel_size, 1, channels)))
        self.stride = stride

    def __call__(self, x: jax.Array) -> jax.Array:
        return depthwise_conv(x, self.kernel[...], self.stride)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def batch_norm_train(x, scale, bias, epsilon):
    """Training-mode BN over all axes but the last: (normalized output, batch mean, batch var)."""
    return _batch_norm_train_forward(x, scale, bias, epsilon)[0]


def _moments(x):
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(x, axes)
    var = jnp.maximum(jnp.mean(jnp.square(x), axes) - jnp.square(mean), 0.0)
    return mean, var


def _batch_norm_train_forward(x, scale, bias, epsilon):
    mean, var = _moments(x)
    rstd = jax.lax.rsqrt(var + epsilon)
    y = (x - mean) * (scale * rstd) + bias
    return (y, mean, var), (x, scale, mean, rstd)


def _batch_norm_train_backward(epsilon, residuals, cotangents):
    x, scale, mean, rstd = residuals
    dy, dmean, dvar = cotangents
    axes = tuple(range(x.ndim - 1))
    n = x.size // x.shape[-1]
    x_hat = (x - mean) * rstd
    dbias = jnp.sum(dy, axes)
    dscale = jnp.sum(dy * x_hat, axes)
    dx = (scale * rstd) * (dy - (dbias + x_hat * dscale) / n) + (dmean + 2.0 * dvar * (x - mean)) / n
    return dx, dscale, dbias


batch_norm_train.defvjp(_batch_norm_train_forward, _batch_norm_train_backward)


class BatchNorm(nnx.BatchNorm):
    def __call__(self, x):
        if self.use_running_average:
            return super().__call__(x)
        y, mean, var = batch_norm_train(x, self.scale[...], self.bias[...], self.epsilon)
        self.mean[...] = jax.lax.stop_gradient(self.momentum * self.mean[...] + (1 - self.momentum) * mean)
        self.var[...] = jax.lax.stop_gradient(self.momentum * self.var[...] + (1 - self.momentum) * var)
        return y


class ConvBN(nnx.Module):
    """Bias-free conv -> BatchNorm (-> ReLU6 if ``activate``) on NHWC float32 input.

    ``kind`` selects the conv: "full" (``nnx.Conv``, k x k over all input channels; the stem),
    "depthwise" (``DepthwiseConv``, k x k per channel; ``in_channels == out_channels``) or
    "pointwise" (``PointwiseConv``, 1 x 1; ``kernel_size`` is ignored).
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
        rngs: nnx.Rngs,
    ):
        if kind == "full":
            self.conv = nnx.Conv(in_channels, out_channels, (kernel_size, kernel_size),
                                 strides=stride, padding="SAME", use_bias=False,
                                 kernel_init=nnx.initializers.glorot_uniform(), rngs=rngs)
        elif kind == "depthwise":
            if in_channels != out_channels:
                raise ValueError(f"ConvBN: depthwise conv needs in_channels == out_channels, "
                                 f"got {in_channels} and {out_channels}")
            self.conv = DepthwiseConv(in_channels, kernel_size, stride=stride, rngs=rngs)
        elif kind == "pointwise":
            self.conv = PointwiseConv(in_channels, out_channels, rngs=rngs)
        else:
            raise ValueError(f"ConvBN: kind must be full, depthwise or pointwise, got {kind!r}")
        self.norm = BatchNorm(out_channels, momentum=bn_momentum, epsilon=bn_epsilon, rngs=rngs)
        self.activate = activate

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.norm(self.conv(x))
        return nnx.relu6(x) if self.activate else x


class InvertedResidual(nnx.Module):
    """MobileNetV2 block: (batch, H, W, in_channels) -> (batch, ceil(H/s), ceil(W/s), out_channels)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int,
        expansion: int,
        bn_momentum: float,
        bn_epsilon: float,
        rngs: nnx.Rngs,
    ):
        bn = dict(bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, rngs=rngs)
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

    Args:
      num_classes: number of output classes (sections x attribute groups in the baseline).
      alpha: width multiplier (0.5 in the DCASE baseline).
      in_channels: input channels; 1 for log-Mel patches (see module docstring).
      bn_momentum: BatchNorm running-average decay (Keras/Flax convention).
      bn_epsilon: BatchNorm variance offset.
      rngs: random streams for parameter initialization.
    """

    def __init__(
        self,
        num_classes: int,
        alpha: float = 0.5,
        in_channels: int = 1,
        bn_momentum: float = KERAS_BN_MOMENTUM,
        bn_epsilon: float = KERAS_BN_EPSILON,
        *,
        rngs: nnx.Rngs,
    ):
        if num_classes < 1:
            raise ValueError(f"MobileNetV2: num_classes must be a positive integer, got {num_classes}")
        if alpha <= 0:
            raise ValueError(f"MobileNetV2: alpha must be positive, got {alpha}")
        if in_channels < 1:
            raise ValueError(f"MobileNetV2: in_channels must be a positive integer, got {in_channels}")
        bn = dict(bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, rngs=rngs)
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
        self.classifier = nnx.Linear(
            self.embedding_dim, num_classes, kernel_init=nnx.initializers.glorot_uniform(), rngs=rngs
        )

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Classify log-Mel patches.

        Args:
          x: float32 ``(batch, frames, mels)`` (one channel) or ``(batch, frames, mels, in_channels)``.

        Returns:
          ``(logits, embedding)``: float32 ``(batch, num_classes)`` unnormalized class scores and
          ``(batch, embedding_dim)`` globally average-pooled features after the last conv (1280 for
          alpha <= 1).
        """
        if x.ndim == 3 and self.in_channels == 1:
            x = x[..., None]
        if x.ndim != 4 or x.shape[-1] != self.in_channels:
            raise ValueError(
                "MobileNetV2: expected input of shape (batch, frames, mels"
                + (", 1) or (batch, frames, mels)" if self.in_channels == 1 else
                   f", {self.in_channels})")
                + f", got {x.shape}"
            )
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        embedding = jnp.mean(self.head_conv(x), axis=(1, 2))
        return self.classifier(embedding), embedding
