"""Models, selected by name so configs can choose them (``config.model.name``).

``create_model(config.model.name, rngs, **other_model_fields)`` builds one; each model class
documents its keyword arguments and their baseline defaults.
"""
from collections.abc import Callable
import inspect

from flax import nnx

from mdg.models.autoencoder import AutoEncoder
from mdg.models.mobilenet_v2 import MobileNetV2

MODELS: dict[str, Callable[..., nnx.Module]] = {
    "autoencoder": AutoEncoder,
    "mobilenet_v2": MobileNetV2,
}


def create_model(name: str, rngs: nnx.Rngs, **kwargs) -> nnx.Module:
    """Build the model registered as ``name`` with constructor arguments ``kwargs``.

    Raises:
      ValueError: ``name`` is not registered, or ``kwargs`` holds an argument the model lacks.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model name {name!r}; known models: {sorted(MODELS)}")
    model_class = MODELS[name]
    accepted = set(inspect.signature(model_class.__init__).parameters) - {"self", "rngs"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ValueError(
            f"model {name!r} has no argument(s) {unknown}; it accepts {sorted(accepted)}"
        )
    return model_class(**kwargs, rngs=rngs)


__all__ = ["AutoEncoder", "MobileNetV2", "MODELS", "create_model"]
