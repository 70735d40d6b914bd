"""cnncompare: compare the classic convolutional networks side by side.

The package holds all of the dashboard's logic; the Streamlit pages only call it.

>>> from cnncompare import get_model, list_models
>>> model = get_model("resnet18", in_channels=1, input_size=28, width=0.25)

The names below come from :mod:`cnncompare.registry`, which imports torch (seconds). They
are loaded on first use (PEP 562), so that ``import cnncompare`` and the command line's
``--help`` stay instant.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_REGISTRY_NAMES = (
    "ModelConfig",
    "ModelInfo",
    "count_params",
    "get_model",
    "list_models",
    "min_input_size",
    "model_info",
    "register_model",
    "resolve_config",
)

__all__ = [
    "ModelConfig",
    "ModelInfo",
    "count_params",
    "get_model",
    "list_models",
    "min_input_size",
    "model_info",
    "register_model",
    "resolve_config",
    "__version__",
]

if TYPE_CHECKING:
    from cnncompare.registry import (
        ModelConfig,
        ModelInfo,
        count_params,
        get_model,
        list_models,
        min_input_size,
        model_info,
        register_model,
        resolve_config,
    )


def __getattr__(name: str) -> Any:
    """``cnncompare.get_model`` and the other registry names, imported on first use."""
    if name in _REGISTRY_NAMES:
        value = getattr(importlib.import_module("cnncompare.registry"), name)
        globals()[name] = value  # the next lookup skips this function
        return value
    raise AttributeError(f"module 'cnncompare' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
