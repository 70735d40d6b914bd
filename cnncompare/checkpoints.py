"""Whether a saved training state can resume a run: checked before anything is loaded.

A checkpoint with the right key can still hold the wrong things (a file from another
version, a hand edit, a bug): tensors of other shapes, an optimizer state for other
parameters, a random-number-generator state the generator refuses, a history of strings,
more epochs than the run has. :func:`checkpoint_problem` names the first such problem in a
sentence, or returns ``None``; :mod:`cnncompare.training` then sets an unusable checkpoint
aside and starts the run over.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from torch import nn

_HISTORY_NUMBERS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
                    "seconds", "images_per_s", "lr")


def _is_number(value: Any, required: bool = False) -> bool:
    if value is None:
        return not required
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _weights_problem(weights: Any, expected: dict[str, torch.Tensor], what: str) -> str | None:
    """Whether ``weights`` has exactly the tensors of ``expected``, shape for shape."""
    if not isinstance(weights, dict):
        return f"its {what} are not a state dict"
    if set(weights) != set(expected):
        missing, extra = set(expected) - set(weights), set(weights) - set(expected)
        return (f"its {what} do not fit the network ({len(missing)} tensor(s) missing, "
                f"{len(extra)} unexpected)")
    for name, tensor in expected.items():
        value = weights[name]
        if not isinstance(value, torch.Tensor) or value.shape != tensor.shape:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            return (f"its {what} do not fit the network ({name}: {shape} where "
                    f"{tuple(tensor.shape)} is expected)")
        if value.dtype.is_floating_point != tensor.dtype.is_floating_point:
            return f"its {what} do not fit the network ({name} has dtype {value.dtype})"
    return None


def _optimizer_problem(saved: Any, optimizer: torch.optim.Optimizer) -> str | None:
    """Whether ``saved`` is a state of ``optimizer``: its groups and, per parameter, state
    tensors of the parameter's shape (a scalar step)."""
    params = [p for g in optimizer.param_groups for p in g["params"]]
    if not isinstance(saved, dict) or not isinstance(saved.get("state"), dict) \
            or not isinstance(saved.get("param_groups"), list):
        return "its optimizer state is missing or not a state dict"
    groups = saved["param_groups"]
    if [len(g.get("params", ())) if isinstance(g, dict) else -1 for g in groups] != \
            [len(g["params"]) for g in optimizer.param_groups]:
        return "its optimizer state has other parameter groups than the optimizer"
    for key, entry in saved["state"].items():
        if not isinstance(key, int) or not 0 <= key < len(params) or not isinstance(entry, dict):
            return "its optimizer state names parameters the network does not have"
        for name, value in entry.items():
            if not isinstance(value, torch.Tensor):
                if _is_number(value, required=True):
                    continue
                return f"its optimizer state holds a {type(value).__name__} for {name}"
            if name == "step" and value.numel() == 1:
                continue
            if value.shape != params[key].shape:
                return (f"its optimizer state does not fit parameter {key} ({name}: "
                        f"{tuple(value.shape)} where {tuple(params[key].shape)} is expected)")
    return None


def _history_problem(history: Any, epoch: int) -> str | None:
    if not isinstance(history, list) or len(history) != epoch:
        return f"its history does not hold the {epoch} epoch(s) it claims"
    for number, rec in enumerate(history, start=1):
        if not isinstance(rec, dict) or rec.get("epoch") != number:
            return f"its history is not one record per epoch 1..{epoch}"
        for key in _HISTORY_NUMBERS:
            if not _is_number(rec.get(key), required=key in ("test_acc", "seconds")):
                return f"its history holds {rec.get(key)!r} as epoch {number}'s {key}"
    return None


def checkpoint_problem(state: Any, *, canonical: Any, epochs: int, num_classes: int,
                       model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                       steps: int) -> str | None:
    """Why a checkpoint cannot resume this run (``None``: it can).

    Checked against the run's freshly built ``model``, ``optimizer`` and ``scheduler``: the
    configuration it belongs to (``canonical``), an epoch within the run's epochs (a
    checkpoint claiming more epochs than the run has is never this run's: the epoch count is
    part of the key), a history of one record per epoch 1..n with numbers in its metric
    fields, the weights and the selected epoch's weights tensor for tensor in the network's
    shapes, an optimizer state whose tensors fit the parameters, a schedule at step ``epoch
    x steps`` and an RNG state of the generator's own size and dtype."""
    if not isinstance(state, dict):
        return "it does not hold a training state"
    missing = [k for k in ("canonical", "epoch", "history", "model", "optimizer", "rng",
                           "selected") if k not in state]
    if missing:
        return f"it lacks {', '.join(missing)}"
    if state["canonical"] != json.loads(json.dumps(canonical)):
        return "it belongs to another configuration"
    epoch = state["epoch"]
    if not isinstance(epoch, int) or isinstance(epoch, bool) or not 1 <= epoch <= epochs:
        return f"it claims epoch {epoch!r} of a run of {epochs} epoch(s)"
    problem = _history_problem(state["history"], epoch)
    if problem:
        return problem
    expected = model.state_dict()
    problem = _weights_problem(state["model"], expected, "weights")
    if problem:
        return problem
    selected = state["selected"]
    if not isinstance(selected, dict) or not isinstance(selected.get("epoch"), int) \
            or not 1 <= selected["epoch"] <= epoch:
        return "its selected epoch is missing or out of range"
    problem = _weights_problem(selected.get("model"), expected, "selected epoch's weights")
    if problem:
        return problem
    confusion = selected.get("confusion")
    if confusion is not None and not (
            isinstance(confusion, list) and len(confusion) == num_classes
            and all(isinstance(r, list) and len(r) == num_classes
                    and all(isinstance(v, int) for v in r) for r in confusion)):
        return "its selected epoch's confusion matrix is not a class x class table of counts"
    problem = _optimizer_problem(state["optimizer"], optimizer)
    if problem:
        return problem
    if scheduler is not None:
        sched = state.get("scheduler")
        if not isinstance(sched, dict) or sched.get("last_epoch") != epoch * steps:
            return f"its learning-rate schedule is not at step {epoch * steps}"
    rng = state["rng"]
    reference = torch.get_rng_state()
    if not isinstance(rng, dict) or not isinstance(rng.get("cpu"), torch.Tensor) \
            or rng["cpu"].dtype != reference.dtype or rng["cpu"].shape != reference.shape:
        return "its random-number-generator state is not one the generator can take"
    return None
