"""Models, selected by name so configs can choose them (``config.model.name``).

``create_model(config.model.name, rngs, **other_model_fields)`` builds one; each model class
documents its keyword arguments and their baseline defaults.

Every model declares what it is, so the training loop, the losses and the scores ask instead of
testing model names:

- ``KIND``: ``"reconstruction"`` (trained to reproduce its input) or ``"classifier"`` (trained to
  predict a class per clip; built with ``num_classes``, and with a ``head`` of
  :mod:`mdg.models.heads`);
- ``OUTPUTS``: the names of the arrays ``model.outputs(x)`` returns, each ``(batch, ...)``:
  ``reconstruction`` (same shape as ``x``), ``logits`` (batch, num_classes), ``embedding``
  (batch, d).
"""
from collections.abc import Callable
import inspect

from flax import nnx

from mdg import errors
from mdg.models.autoencoder import AutoEncoder
from mdg.models.mobilenet_v2 import MobileNetV2

MODELS: dict[str, Callable[..., nnx.Module]] = {
    "autoencoder": AutoEncoder,
    "mobilenet_v2": MobileNetV2,
}
KINDS = ("reconstruction", "classifier")


def model_class(name: str):
    """The class registered as ``name``; ValueError naming the known models otherwise."""
    if name not in MODELS:
        raise errors.UserError(f"unknown model name {name!r}; known models: {sorted(MODELS)}")
    return MODELS[name]


def create_model(name: str, rngs: nnx.Rngs, **kwargs) -> nnx.Module:
    """Build the model registered as ``name`` with constructor arguments ``kwargs``.

    Raises:
      ValueError: ``name`` is not registered, or ``kwargs`` holds an argument the model lacks.
    """
    cls = model_class(name)
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "rngs"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ValueError(
            f"model {name!r} has no argument(s) {unknown}; it accepts {sorted(accepted)}"
        )
    return cls(**kwargs, rngs=rngs)


__all__ = ["AutoEncoder", "MobileNetV2", "MODELS", "KINDS", "model_class", "create_model"]


def split_pure(model: nnx.Module) -> tuple[dict, dict]:
    """``(params, rest)`` of ``model`` as nested dicts of arrays (``rest``: BN statistics, head
    scale). The train state holds these plain dicts rather than ``nnx.State``: every jitted call
    flattens its arguments, and Variable wrappers cost ~10x a dict's (measured 0.63 vs 0.07 ms per
    AE state, about a fifth of the step's host time); ``nnx.merge`` takes them as they are."""
    _, params, rest = nnx.split(model, nnx.Param, ...)
    return nnx.to_pure_dict(params), nnx.to_pure_dict(rest)
