"""Layers shared by mdg's models, with forms written for fast training on CPU with XLA.

Each computes what its textbook form computes (tests/test_models.py compares them with XLA's own
grouped convolution, with automatic differentiation and with ``nnx.BatchNorm``). The convolutions
have two implementations, chosen per layer by ``conv_impl`` (see ``resolve_conv_impl``):
"cpu_tuned", the forms below that XLA's CPU backend runs well, and "native", XLA's own grouped
convolution and a plain matmul, which GPU (cuDNN) and TPU (native depthwise) backends run well;
"auto" picks the first on CPU and the second elsewhere. CPU-tuned factors (measured on a 2-core
Xeon with AVX-512, batch 128 MobileNetV2 training; ``benchmarks/train_step.py --workloads
mnv2_train,mnv2_train_native`` measures the whole step both ways):

- ``depthwise_conv`` / ``DepthwiseConv``: depthwise k x k convolution as shifted multiply-adds
  with a hand-written VJP; XLA runs grouped convolutions as slow generic loops (this form: ~10x
  faster forward, ~5x backward; the whole MobileNetV2 step ~5x).
- ``pointwise_conv`` / ``PointwiseConv``: 1 x 1 convolution as a matmul, with a VJP that steers
  XLA away from transposing the wide operand (step -25 %).
- ``batch_norm_train`` / ``FusedBatchNorm``: ``nnx.BatchNorm`` with a leaner training-mode VJP
  (step -5 % for MobileNetV2, -10 % for the autoencoder).

All take channels-last (NHWC / ``(..., channels)``) float arrays. Mixed precision: the modules
take a computation ``dtype`` (float32 or bfloat16); parameters stay float32 and are cast to it at
use, convolutions run in it, and BatchNorm computes its statistics in float32 whatever the dtype.
"""
import functools

from flax import nnx
import jax
import jax.numpy as jnp

CONV_IMPLS = ("auto", "cpu_tuned", "native")


def resolve_conv_impl(conv_impl: str) -> str:
    """The convolution implementation ``conv_impl`` stands for: "cpu_tuned" or "native".

    "auto" resolves by ``jax.default_backend()`` when traced: "cpu_tuned" on CPU, where the
    shifted multiply-adds beat XLA's grouped convolution several times over, and "native" on GPU
    and TPU, whose convolution libraries have fast depthwise kernels.

    Raises:
      ValueError: ``conv_impl`` is not one of ``CONV_IMPLS``.
    """
    if conv_impl not in CONV_IMPLS:
        raise ValueError(f"conv_impl must be one of {CONV_IMPLS}, got {conv_impl!r}")
    if conv_impl == "auto":
        return "cpu_tuned" if jax.default_backend() == "cpu" else "native"
    return conv_impl


def compute_dtype(dtype) -> jnp.dtype:
    """``dtype`` (a name such as "bfloat16", or a dtype) as a floating-point dtype.

    Raises:
      ValueError: ``dtype`` is not a floating-point type.
    """
    try:
        resolved = jnp.dtype(dtype)
    except TypeError as error:
        raise ValueError(f"computation dtype {dtype!r} is not a dtype") from error
    if not jnp.issubdtype(resolved, jnp.floating):
        raise ValueError(f"computation dtype must be floating point (float32, bfloat16), "
                         f"got {resolved}")
    return resolved


def same_padding(size: int, kernel_size: int, stride: int) -> tuple[int, int]:
    """TF/XLA "SAME" zero padding (before, after) of one spatial axis: output ceil(size / stride),
    the odd pixel of padding at the end."""
    total = max((-(-size // stride) - 1) * stride + kernel_size - size, 0)
    return total // 2, total - total // 2


def _pad_same(x: jax.Array, kernel_size: int, stride: int) -> jax.Array:
    _, height, width, _ = x.shape
    return jnp.pad(x, ((0, 0), same_padding(height, kernel_size, stride),
                       same_padding(width, kernel_size, stride), (0, 0)))


def _window(x: jax.Array, i: int, j: int, out_h: int, out_w: int,
            stride: int) -> jax.Array:
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
    # Products and sums in float32 whatever the computation dtype: a bfloat16 sum over every
    # position would lose the kernel gradient's low bits.
    x_padded = jax.lax.optimization_barrier(_pad_same(x, k, stride))
    dy = dy.astype(jnp.float32)
    dkernel = jnp.stack([
        jnp.sum(_sum_rows(_window(x_padded, i, j, out_h, out_w, stride).astype(jnp.float32)
                          * dy), axis=(0, 1))
        for i in range(k) for j in range(k)
    ])
    return dx, dkernel.reshape(kernel.shape).astype(kernel.dtype)


def native_depthwise_conv(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
    """``depthwise_conv`` (same arguments and result) as XLA's grouped convolution, for backends
    with native depthwise kernels."""
    return jax.lax.conv_general_dilated(x, kernel, (stride, stride), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        feature_group_count=x.shape[-1])


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
        dkernel = jnp.matmul(x.T, dy_rows, preferred_element_type=jnp.float32)
    else:
        dkernel = jnp.matmul(dy_rows.T, x, preferred_element_type=jnp.float32).T
    return dy @ kernel.T, dkernel.astype(kernel.dtype)


pointwise_conv.defvjp(_pointwise_conv_forward, _pointwise_conv_backward)


class PointwiseConv(nnx.Module):
    """Bias-free 1 x 1 conv: ``(..., in_channels)`` -> ``(..., out_channels)`` in ``dtype``;
    float32 kernel ``(in_channels, out_channels)``, glorot-uniform (Keras's fans for a 1 x 1 conv
    kernel). ``conv_impl``: "cpu_tuned" is ``pointwise_conv``, "native" a plain matmul."""

    def __init__(self, in_channels: int, out_channels: int, *, conv_impl: str = "auto",
                 dtype="float32", rngs: nnx.Rngs):
        resolve_conv_impl(conv_impl)  # fail at construction on a bad name
        self.kernel = nnx.Param(nnx.initializers.glorot_uniform()(
            rngs.params(), (in_channels, out_channels)))
        self.conv_impl = conv_impl
        self.dtype = compute_dtype(dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        x, kernel = x.astype(self.dtype), self.kernel[...].astype(self.dtype)
        if resolve_conv_impl(self.conv_impl) == "cpu_tuned":
            return pointwise_conv(x, kernel)
        return x @ kernel


class DepthwiseConv(nnx.Module):
    """Bias-free depthwise k x k conv, "SAME" padding: ``(batch, H, W, C)`` ->
    ``(batch, ceil(H / stride), ceil(W / stride), C)`` in ``dtype``. float32 kernel
    ``(k, k, 1, C)``, glorot-uniform (Keras's fans for its ``(k, k, C, 1)`` depthwise kernel have
    the same sum: the same bound). ``conv_impl``: "cpu_tuned" is ``depthwise_conv``, "native"
    ``native_depthwise_conv``."""

    def __init__(self, channels: int, kernel_size: int, *, stride: int, conv_impl: str = "auto",
                 dtype="float32", rngs: nnx.Rngs):
        resolve_conv_impl(conv_impl)
        self.kernel = nnx.Param(nnx.initializers.glorot_uniform()(
            rngs.params(), (kernel_size, kernel_size, 1, channels)))
        self.stride = stride
        self.conv_impl = conv_impl
        self.dtype = compute_dtype(dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        x, kernel = x.astype(self.dtype), self.kernel[...].astype(self.dtype)
        if resolve_conv_impl(self.conv_impl) == "cpu_tuned":
            return depthwise_conv(x, kernel, self.stride)
        return native_depthwise_conv(x, kernel, self.stride)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def batch_norm_train(x: jax.Array, scale: jax.Array, bias: jax.Array,
                     epsilon: float) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Training-mode batch normalization over all axes but the last (channels).

    Args:
      x: float ``(..., channels)``, any float dtype.
      scale, bias: float32 ``(channels,)``.
      epsilon: variance offset.

    Returns:
      ``(normalized, mean, var)``: ``(x - mean) / sqrt(var + epsilon) * scale + bias`` in x's
      dtype, with the batch mean and biased variance, float32 ``(channels,)`` computed in float32,
      the numbers ``nnx.BatchNorm`` computes.
      The VJP keeps only ``x`` and per-channel vectors; automatic differentiation would also store
      the centred input, one more full-size array written and read per layer.
    """
    return _batch_norm_train_forward(x, scale, bias, epsilon)[0]


def _batch_norm_train_forward(x, scale, bias, epsilon):
    axes = tuple(range(x.ndim - 1))
    x32 = x.astype(jnp.float32)  # statistics in float32 whatever x's dtype (no-op for float32)
    mean = jnp.mean(x32, axes)
    var = jnp.maximum(jnp.mean(jnp.square(x32), axes) - jnp.square(mean), 0.0)
    inv_std = jax.lax.rsqrt(var + epsilon)
    out = ((x32 - mean) * (scale * inv_std) + bias).astype(x.dtype)
    return (out, mean, var), (x, scale, mean, inv_std)


def _batch_norm_train_backward(epsilon, residuals, cotangents):
    x, scale, mean, inv_std = residuals
    d_out, d_mean, d_var = cotangents
    axes = tuple(range(x.ndim - 1))
    count = x.size // x.shape[-1]
    x32, d_out = x.astype(jnp.float32), d_out.astype(jnp.float32)
    x_hat = (x32 - mean) * inv_std
    d_bias = jnp.sum(d_out, axes)
    d_scale = jnp.sum(d_out * x_hat, axes)
    d_x = ((scale * inv_std) * (d_out - (d_bias + x_hat * d_scale) / count)
           + (d_mean + 2.0 * d_var * (x32 - mean)) / count)
    return d_x.astype(x.dtype), d_scale, d_bias


batch_norm_train.defvjp(_batch_norm_train_forward, _batch_norm_train_backward)


class FusedBatchNorm(nnx.BatchNorm):
    """``nnx.BatchNorm`` over the last axis, with scale and bias (same variables, modes and
    running-average update), whose training-mode pass is ``batch_norm_train``. Statistics and
    normalization are float32 in both modes; the output has the input's dtype. Leave ``dtype``
    unset: ``nnx.BatchNorm`` would cast the running statistics to it."""

    def __call__(self, x: jax.Array, use_running_average: bool | None = None) -> jax.Array:
        if use_running_average is None:
            use_running_average = self.use_running_average
        if use_running_average:
            # nnx.BatchNorm promotes a bfloat16 input to the float32 statistics.
            return super().__call__(x, use_running_average=True).astype(x.dtype)
        out, mean, var = batch_norm_train(x, self.scale[...], self.bias[...], self.epsilon)
        decay = self.momentum
        self.mean[...] = jax.lax.stop_gradient(decay * self.mean[...] + (1 - decay) * mean)
        self.var[...] = jax.lax.stop_gradient(decay * self.var[...] + (1 - decay) * var)
        return out
