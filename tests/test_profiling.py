"""cnncompare.profiling: closed-form counts, invariants, canonical figures, the disk cache."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from torch import nn

from cnncompare import count_params, paths, profiling, resolve_config
from cnncompare.registry import preset_config
from tests.cost_helpers import canonical_home

# --- Closed-form fixtures ---------------------------------------------------------------


def test_one_conv_closed_form():
    # 3 -> 8 channels, 3x3, padding 1, on 3x8x8: 8*8*8 outputs, each 3*3*3 multiply-adds.
    prof = profiling.analyze_module(lambda: nn.Conv2d(3, 8, 3, padding=1), (1, 3, 8, 8))
    s = prof.summary()
    macs = 8 * 8 * 8 * (3 * 3 * 3)
    assert s["macs"] == macs == 13_824
    assert s["flops"] == 2 * macs
    # The input needs no gradient: backward computes the weight gradient only (= forward).
    assert s["train_flops"] == 2 * 2 * macs
    assert s["params"] == s["trainable_params"] == 8 * 3 * 3 * 3 + 8
    assert s["param_mb"] == pytest.approx((8 * 27 + 8) * 4 / 1e6)
    assert s["activation_mb"] == pytest.approx(8 * 8 * 8 * 4 / 1e6)
    assert s["skipped_ops"] == ""
    row = prof.layer_table().iloc[0]
    assert (row["kernel"], row["stride"], row["padding"]) == ("3x3", "1x1", "1x1")
    assert row["shape_arithmetic"] == "floor((8 + 2*1 - 3) / 1) + 1 = 8"
    assert row["output_shape"] == "8x8x8"


def test_one_linear_closed_form():
    prof = profiling.analyze_module(lambda: nn.Linear(20, 5), (1, 20))
    s = prof.summary()
    assert s["macs"] == 20 * 5
    assert s["flops"] == 2 * 20 * 5
    assert s["train_flops"] == 2 * (2 * 20 * 5)  # forward + weight gradient
    assert s["params"] == 20 * 5 + 5
    assert prof.layer_table()["shape_arithmetic"].iloc[0] == ""


def test_conv_then_linear_counts_every_gradient():
    # conv 1->2, 3x3 on 5x5: 18 outputs x 9 = 162 MACs; linear 18->4: 72 MACs.
    def build() -> nn.Module:
        return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(18, 4))

    prof = profiling.analyze_module(build, (1, 1, 5, 5))
    s = prof.summary()
    assert s["macs"] == 162 + 72
    assert s["flops"] == 2 * (162 + 72)
    # conv: forward + weight grad; linear: forward + weight grad + input grad.
    assert s["train_flops"] == 2 * 162 * 2 + 2 * 72 * 3
    layers = prof.layer_table()
    assert list(layers["type"]) == ["Conv2d", "ReLU", "Flatten", "Linear"]
    assert list(layers["macs"]) == [162, 0, 0, 72]
    assert list(layers["params"]) == [20, 0, 0, 76]
    # conv, relu, flatten outputs (18 floats each) and the 4 logits.
    assert s["activation_mb"] == pytest.approx((18 * 3 + 4) * 4 / 1e6)
    ops = prof.by_operator().set_index(["counter", "operator"])["count"]
    assert ops[("fvcore MACs", "conv")] == 162
    assert ops[("torch FLOPs", "aten.convolution")] == 324


@pytest.mark.parametrize("groups", [1, 2, 4])
def test_grouped_conv_closed_form(groups):
    """A grouped convolution's backward is two grouped products, like its forward.

    1x1 conv 4->8, then 3x3 conv 8->8 (padding 1) with ``groups`` groups, on 4x8x8.
    """
    prof = profiling.analyze_module(
        lambda: nn.Sequential(nn.Conv2d(4, 8, 1), nn.Conv2d(8, 8, 3, padding=1, groups=groups)),
        (1, 4, 8, 8))
    s = prof.summary()
    first = 8 * 8 * 8 * 4  # 64 positions x 8 outputs x 4 inputs
    grouped = 8 * 8 * 8 * (8 // groups) * 3 * 3  # each output sees 8/groups input channels
    assert s["macs"] == first + grouped
    assert s["flops"] == 2 * (first + grouped)
    # Forward and weight gradient of both; the input gradient of the grouped one only
    # (the image needs none). torch's own counter would add (groups - 1) x 2 x grouped.
    assert s["train_flops"] == 2 * (first + grouped) * 2 + 2 * grouped


def test_single_grouped_conv_trains_at_twice_its_forward():
    # The first layer: forward + weight gradient, each one grouped product.
    prof = profiling.analyze_module(lambda: nn.Conv2d(6, 4, 3, groups=2), (1, 6, 5, 5))
    macs = 3 * 3 * 4 * (6 // 2) * 3 * 3
    assert prof.summary()["macs"] == macs
    assert prof.summary()["train_flops"] == 2 * (2 * macs)


@pytest.mark.parametrize("name", ["alexnet2012", "resnet18", "googlenet", "vgg11_bn"])
def test_train_flops_rule_on_the_zoo(name):
    """train = forward + weight gradients (= forward) + input gradients (= forward less the
    first layer's): exactly 3 x forward - the first layer's forward, grouped or not."""
    prof = profiling.analyze(preset_config(name, "small"), cache=False)
    layers = prof.layer_table()
    first = layers[layers["macs"] > 0].iloc[0]
    assert first["type"] == "Conv2d"
    total = prof.summary()
    assert total["train_flops"] == 3 * total["flops"] - 2 * first["macs"]


def test_inplace_activation_is_not_counted_twice():
    def build(inplace: bool):
        return lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(inplace=inplace))

    plain = profiling.analyze_module(build(False), (1, 1, 5, 5)).summary()
    inplace = profiling.analyze_module(build(True), (1, 1, 5, 5)).summary()
    assert plain["activation_mb"] == pytest.approx(2 * inplace["activation_mb"])


def test_skipped_operators_are_listed():
    prof = profiling.analyze_module(
        lambda: nn.Sequential(nn.Conv2d(1, 4, 3), nn.MaxPool2d(2), nn.MaxPool2d(2)),
        (1, 1, 10, 10))
    assert prof.skipped_ops == {"aten::max_pool2d": 2}
    assert prof.summary()["skipped_ops"] == "aten::max_pool2d (2)"
    assert prof.skipped().to_dict("records") == [{"operator": "aten::max_pool2d", "calls": 2}]


def test_format_skipped():
    assert profiling.format_skipped({}) == ""
    assert profiling.format_skipped({"aten::max_pool2d": 1, "aten::add": 8}) == \
        "aten::add (8), aten::max_pool2d (1)"


# --- Invariants on the zoo ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["resnet18", "googlenet", "alexnet2012"])
def test_layer_table_adds_up(name):
    cfg = preset_config(name, "small")
    prof = profiling.analyze(cfg, cache=False)
    layers = prof.layer_table()
    total = prof.summary()
    assert layers["params"].sum() == total["params"] == count_params(name, **_args(cfg))
    assert layers["macs"].sum() == total["macs"]
    assert prof.by_module(1)["macs"].sum() == total["macs"]
    assert prof.by_module(2)["macs"].sum() == total["macs"]
    # Every spatial layer's arithmetic ends in the size the layer really produced.
    spatial = layers[layers["shape_arithmetic"].str.contains("floor|ceil")]
    assert len(spatial) > 3
    for _, row in spatial.iterrows():
        result = int(re.search(r"= (\d+)$", row["shape_arithmetic"]).group(1))
        assert result == int(row["output_shape"].split("x")[1]), row.to_dict()


def test_reused_module_counted_once(canonical):
    # ResNet blocks call one ReLU module twice: torchinfo marks the second call.
    layers = profiling.analyze("resnet18").layer_table()
    shared = layers[layers["shared"]]
    assert len(shared) == 8
    assert set(shared["type"]) == {"ReLU"}
    assert (shared["params"] == 0).all()


def _args(cfg) -> dict:
    return {"num_classes": cfg.num_classes, "in_channels": cfg.in_channels,
            "input_size": cfg.input_size, "width": cfg.width, "stem": cfg.stem}


# --- Canonical figures (computed once per test process) -----------------------------------


@pytest.fixture
def canonical(monkeypatch):
    monkeypatch.setenv("CNNCOMPARE_HOME", str(canonical_home()))


def test_resnet18_canonical(canonical):
    s = profiling.cost_summary(resolve_config("resnet18"))
    assert s["params"] == s["trainable_params"] == 11_689_512
    assert s["macs"] == pytest.approx(1.82e9, rel=0.01)
    assert s["flops"] == pytest.approx(3.63e9, rel=0.01)
    assert s["param_mb"] == pytest.approx(11_689_512 * 4 / 1e6)
    assert s["skipped_ops"] == "aten::add (8), aten::max_pool2d (1)"
    # Backward costs about twice the forward (the first convolution needs no input grad).
    assert 2.8 < s["train_flops"] / s["flops"] < 3.0


def test_alexnet_canonical(canonical):
    s = profiling.cost_summary(resolve_config("alexnet"))
    assert s["params"] == 61_100_840
    assert s["macs"] == pytest.approx(0.714e9, rel=0.01)
    assert s["flops"] == pytest.approx(1.428e9, rel=0.01)


def test_flops_are_twice_conv_and_linear_macs(canonical):
    for name in ("resnet18", "alexnet"):
        prof = profiling.analyze(name)
        assert prof.from_cache
        conv_linear = prof.macs_by_operator["conv"] + prof.macs_by_operator["linear"]
        assert prof.totals["flops"] == 2 * conv_linear


def test_cost_summary_contract(canonical):
    s = profiling.cost_summary(resolve_config("resnet18"))
    assert tuple(s) == profiling.SUMMARY_KEYS == (
        "params", "trainable_params", "macs", "flops", "train_flops", "param_mb",
        "activation_mb", "skipped_ops")
    for key in ("params", "trainable_params", "macs", "flops", "train_flops"):
        assert type(s[key]) is int
    assert isinstance(s["param_mb"], float) and isinstance(s["activation_mb"], float)
    assert isinstance(s["skipped_ops"], str)


# --- The disk cache -----------------------------------------------------------------------


def test_warm_call_reads_the_disk_cache(monkeypatch):
    cfg = preset_config("alexnet", "small")
    before = profiling.cache_stats()
    cold = profiling.cost_summary(cfg)
    with monkeypatch.context() as m:  # a warm call builds nothing: it reads the file
        m.setattr(profiling, "analyze_module", lambda *a, **k: pytest.fail("computed"))
        warm = profiling.cost_summary(cfg)
    after = profiling.cache_stats()
    assert warm == cold
    assert after["computed"] - before["computed"] == 1
    assert after["disk_hits"] - before["disk_hits"] == 1
    files = list(paths.cache_dir("profile").glob("alexnet-*.json"))
    assert len(files) == 1
    assert json.loads(files[0].read_text())["totals"] == cold
    # Another configuration is another entry.
    profiling.cost_summary(preset_config("alexnet", "small", width=0.5))
    assert profiling.cache_stats()["computed"] - before["computed"] == 2


def test_cache_is_keyed_by_versions_and_code(monkeypatch):
    cfg = preset_config("lenet", "small")
    profiling.cost_summary(cfg)
    n = profiling.cache_stats()["computed"]
    real = profiling.library_versions()
    monkeypatch.setattr(profiling, "library_versions", lambda: dict(real, torch="0.0.0"))
    profiling.cost_summary(cfg)
    assert profiling.cache_stats()["computed"] == n + 1
    assert len(list(paths.cache_dir("profile").glob("lenet-*.json"))) == 2
    # An edit to the model code (or to this module) is another key too.
    monkeypatch.setattr(profiling, "code_digest", lambda: "edited")
    profiling.cost_summary(cfg)
    assert profiling.cache_stats()["computed"] == n + 2


def test_damaged_cache_file_is_recomputed():
    cfg = preset_config("lenet", "small")
    good = profiling.cost_summary(cfg)
    (f,) = paths.cache_dir("profile").glob("lenet-*.json")
    # Not JSON, or JSON of another shape (an older schema): computed again, overwritten.
    for damaged in ("{not json", '{"totals": 1}', "[]"):
        f.write_text(damaged)
        n = profiling.cache_stats()["computed"]
        assert profiling.cost_summary(cfg) == good
        assert profiling.cache_stats()["computed"] == n + 1
        assert json.loads(f.read_text())["totals"] == good


def test_clear_cache():
    profiling.cost_summary(preset_config("lenet", "small"))
    assert profiling.clear_cache() == 1
    assert not list(paths.cache_dir("profile").glob("*.json"))


# --- Multi-model views --------------------------------------------------------------------


def test_profile_models_one_row_each():
    frame = profiling.profile_models(["lenet", "alexnet"], preset="small")
    assert list(frame["model"]) == ["lenet", "alexnet"]
    assert {"model", "params", "macs", "flops", "param_mb", "activation_mb",
            "skipped_ops"} <= set(frame.columns)
    assert pd.api.types.is_integer_dtype(frame["macs"])
    assert list(frame["input"]) == ["1x28x28", "1x28x28"]
    shared = profiling.profile_models(["lenet", "alexnet"], input_size=32, in_channels=3,
                                      width=0.25)
    assert list(shared["input"]) == ["3x32x32", "3x32x32"]
    assert list(shared["width"]) == [0.25, 0.25]


def test_bad_configurations_raise_value_error():
    with pytest.raises(ValueError, match="Unknown model"):
        profiling.analyze("resnet19")
    with pytest.raises(ValueError, match="at least"):
        profiling.analyze("lenet", input_size=4)
    with pytest.raises(ValueError, match="preset"):
        profiling.profile_models(["lenet"], preset="huge")
    with pytest.raises(ValueError, match="batch of 1"):
        profiling.analyze_module(lambda: nn.Conv2d(1, 1, 1), (2, 1, 4, 4))
    assert not list(paths.cache_dir("profile").iterdir())  # nothing written, nothing half
    with pytest.raises(ValueError, match="depth"):
        profiling.analyze("lenet").by_module(0)
