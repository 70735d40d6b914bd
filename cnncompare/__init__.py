"""cnncompare: compare the classic convolutional networks side by side.

The package holds all of the dashboard's logic; the Streamlit pages only call it.

>>> from cnncompare import get_model, list_models
>>> model = get_model("resnet18", in_channels=1, input_size=28, width=0.25)
"""

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

__version__ = "0.1.0"

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
