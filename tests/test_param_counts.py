"""Parameter counts: built on the meta device without initialisers, kept on disk."""

from __future__ import annotations

import pytest
import torch

from cnncompare import count_params, list_models, registry
from cnncompare.registry import PARAM_STATS, on_meta_device, param_counts_path, resolve_config


def _fresh_process_memory() -> None:
    registry._PARAM_COUNTS.clear()


@pytest.mark.parametrize("name", list_models())
def test_counts_equal_a_model_built_with_its_initialisers(name):
    """Skipping the initialisers on the meta device changes no count."""
    with torch.device("meta"):
        initialised = resolve_config(name).build()
    expected = sum(p.numel() for p in initialised.parameters())
    assert count_params(name) == expected
    small = dict(input_size=32, width=0.25)
    with torch.device("meta"):
        initialised = resolve_config(name, **small).build()
    assert count_params(name, **small) == sum(p.numel() for p in initialised.parameters())


def test_counts_are_read_back_from_disk_not_built_again():
    _fresh_process_memory()
    before = dict(PARAM_STATS)
    first = [count_params(n) for n in list_models()]
    assert PARAM_STATS["built"] - before["built"] == len(first)
    assert param_counts_path().exists()
    _fresh_process_memory()  # as a new process would start
    again = [count_params(n) for n in list_models()]
    assert again == first
    assert PARAM_STATS["built"] - before["built"] == len(first)  # nothing built again
    assert PARAM_STATS["hits"] - before["hits"] == len(first)


def test_a_home_that_cannot_be_written_still_counts(cnncompare_home):
    _fresh_process_memory()
    cnncompare_home.mkdir(parents=True, exist_ok=True)
    (cnncompare_home / "cache").write_text("a file where the cache folder would go")
    assert count_params("resnet18") == 11_689_512
    assert not param_counts_path().exists()


def test_meta_device_skips_initialisers_only_on_meta_and_only_in_this_thread():
    import threading

    seen = []
    with on_meta_device():
        meta = torch.nn.Linear(3, 2)
        real = torch.nn.Linear(3, 2, device="cpu")  # explicit device: initialised
        worker = threading.Thread(target=lambda: seen.append(torch.nn.Linear(3, 2)))
        worker.start()
        worker.join()
    assert meta.weight.is_meta
    assert not real.weight.is_meta and real.weight.abs().sum() > 0
    assert not seen[0].weight.is_meta and seen[0].weight.abs().sum() > 0


def test_a_corrupt_counts_file_is_ignored():
    _fresh_process_memory()
    path = param_counts_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json")
    assert count_params("lenet") == 61_706
    _fresh_process_memory()
    path.write_text('{"x": "not a count"}')
    assert count_params("lenet") == 61_706
