"""Model adapters: the registry and the built-in ones.

Importing this package is cheap: the adapters import torch, transformers or httpx only when a
model is loaded. Add your own with :func:`register_adapter` in a module listed under
``plugins:`` in ``tollgate.yaml``.
"""

from harness.adapters import hf_causal, hf_classifier, openai_http, python_callable  # noqa: F401  (registers)
from harness.adapters.base import (
    AdapterSpec,
    Generation,
    GenerationSettings,
    Loglikelihood,
    Model,
    ModelConfig,
    StrictOptions,
    adapters,
    register_adapter,
)

__all__ = [
    "AdapterSpec", "Generation", "GenerationSettings", "Loglikelihood", "Model", "ModelConfig",
    "StrictOptions", "adapters", "register_adapter",
]
