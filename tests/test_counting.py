"""cnncompare.counting: fvcore's MACs on the meta device, figure for figure equal to fvcore."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnncompare import counting, list_models, profiling
from cnncompare.registry import on_meta_device, preset_config


def _zeroed(build) -> nn.Module:
    """``build()`` with real, zeroed storage and no initialiser run (fast even for VGG)."""
    with on_meta_device():
        model = build()
    model.to_empty(device="cpu")
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            t.fill_(1 if name.endswith("running_var") else 0)
    return model


def _ours(build, shape, train: bool = False) -> counting.MacCount:
    with on_meta_device():
        model = build()
    model.train(train)
    return counting.count_macs(model, torch.zeros(shape, device="meta"))


def _fvcore(build, shape, train: bool = False):
    model = _zeroed(build)
    model.train(train)
    return counting.fvcore_macs(model, torch.zeros(shape))


def _assert_same(ours: counting.MacCount, ref) -> None:
    assert ours.total() == int(ref.total())
    assert dict(ours.by_operator()) == {k: int(v) for k, v in ref.by_operator().items()}
    assert dict(ours.by_module()) == {k: int(v) for k, v in ref.by_module().items()}
    assert dict(ours.unsupported_ops()) == dict(ref.unsupported_ops())


@pytest.mark.parametrize("preset", ["small", "canonical"])
@pytest.mark.parametrize("name", list_models())
def test_zoo_counts_equal_fvcore_and_flop_counter_mode(name, preset):
    """Every figure fvcore gives (total, per operator, per module, skipped operators), and
    torch's FlopCounterMode's FLOPs, from the one pass :func:`count_macs_and_flops` makes."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = preset_config(name, preset)
    shape = (1, cfg.in_channels, cfg.input_size, cfg.input_size)
    with on_meta_device():
        model = cfg.build()
    model.eval()
    macs, flops, by_op = counting.count_macs_and_flops(model, torch.zeros(shape, device="meta"))
    _assert_same(macs, _fvcore(cfg.build, shape))
    reference = FlopCounterMode(display=False)
    with reference, torch.no_grad():
        model(torch.zeros(shape, device="meta"))
    assert flops == reference.get_total_flops()
    assert by_op == {str(k): v for k, v in reference.get_flop_counts()["Global"].items()}


@pytest.mark.parametrize("preset", ["small", "canonical"])
@pytest.mark.parametrize("name", list_models())
def test_training_step_flops_equal_flop_counter_mode(name, preset):
    """The training step's FLOPs derived from its forward pass equal those counted by
    running the backward pass, with torch's FlopCounterMode as with our own counter."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = preset_config(name, preset)
    with on_meta_device():
        model = cfg.build()
    model.train()
    x = torch.zeros(2, cfg.in_channels, cfg.input_size, cfg.input_size, device="meta")
    derived = counting.TrainStepFlopCounter()
    with derived:
        model(x)
    reference = FlopCounterMode(display=False)
    with reference:
        profiling._first_tensor_sum(model(x)).backward()
    model.zero_grad(set_to_none=True)
    assert derived.total() == reference.get_total_flops() > 0
    custom = {torch.ops.aten.convolution_backward: profiling._conv_backward_flops}
    ours = counting.FlopCounter(custom)
    with ours:
        profiling._first_tensor_sum(model(x)).backward()
    before = profiling.cache_stats()["backward_runs"]
    assert profiling._train_flops(model, (1, *x.shape[1:])) == ours.total() // 2
    assert profiling.cache_stats()["backward_runs"] == before  # derived, not run


def test_training_step_without_a_backward_rule_runs_the_backward_pass():
    class Baddbmm(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1, 4, 3))

        def forward(self, x):
            return torch.baddbmm(x.new_zeros(1, 2, 3), x.view(1, 2, 4), self.w)

    with on_meta_device():
        model = Baddbmm()
    with pytest.raises(counting.CountingError, match="backward"):
        with counting.TrainStepFlopCounter():
            model(torch.zeros(2, 4, device="meta"))
    before = profiling.cache_stats()["backward_runs"]
    flops = profiling._train_flops(model, (1, 4))
    assert profiling.cache_stats()["backward_runs"] == before + 1
    # forward 2*2*4*3 and the weight gradient (the input needs none), halved per image.
    assert flops == (2 * 2 * 4 * 3) * 2 // 2


def test_flop_counter_counts_this_thread_only():
    import threading

    with on_meta_device():
        model = nn.Linear(8, 4)
    x = torch.zeros(1, 8, device="meta")
    counter = counting.FlopCounter()
    with counter:
        worker = threading.Thread(target=lambda: model(x))
        worker.start()
        worker.join()
        assert counter.total() == 0  # the other thread's product is not ours
        assert not torch.nn.modules.module._global_forward_pre_hooks  # nothing global
        model(x)
    assert counter.total() == 2 * 8 * 4


class _Odd(nn.Module):
    """Operators the zoo does not use, each with its own fvcore formula or none."""

    def __init__(self):
        super().__init__()
        self.up = nn.ConvTranspose2d(4, 3, 3, stride=2)
        self.ln = nn.LayerNorm([3, 9, 9])
        self.gn = nn.GroupNorm(3, 3)
        self.inorm = nn.InstanceNorm2d(3, affine=True)
        self.bn = nn.BatchNorm2d(3, affine=False)
        self.shared = nn.Conv2d(3, 3, 1)
        self.alias = self.shared  # one module, two names: counted under the first
        self.head = nn.Linear(9, 5)

    def forward(self, x):
        x = self.up(x)
        x = self.gn(self.ln(x))
        x = self.bn(self.inorm(x))
        x = self.alias(self.shared(x))
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = F.interpolate(x, size=(9, 9), mode="bilinear", align_corners=False)
        x = F.local_response_norm(x, 2)
        x = torch.sigmoid(x) * 2 + x / 3 - 1
        x = x @ x.transpose(-1, -2)  # matmul
        x = torch.bmm(x.flatten(0, 1), x.flatten(0, 1))
        x = F.adaptive_avg_pool2d(x.unsqueeze(0), 3)
        return self.head(x.flatten(2)).sum(-1) + torch.mm(x.flatten(1)[:, :9],
                                                          torch.ones(9, 2)).sum()


@pytest.mark.parametrize("train", [False, True])
def test_other_operators_equal_fvcore(train):
    ours = _ours(_Odd, (1, 4, 4, 4), train)
    _assert_same(ours, _fvcore(_Odd, (1, 4, 4, 4), train))
    assert {"conv", "layer_norm", "group_norm", "instance_norm", "batch_norm",
            "upsample_nearest2d", "upsample_bilinear2d", "matmul", "bmm", "linear",
            "mm"} <= set(ours.by_operator())
    assert ours.unsupported_ops()["aten::pad"] == 1  # inside local_response_norm


def test_closed_form_conv():
    ours = _ours(lambda: nn.Conv2d(3, 8, 3, padding=1), (1, 3, 8, 8))
    assert ours.total() == 8 * 8 * 8 * 27 == 13_824
    assert dict(ours.by_module()) == {"": 13_824}


def test_an_operator_without_a_reproduced_formula_falls_back_to_fvcore():
    class Einsum(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(6, 4))

        def forward(self, x):
            return torch.einsum("bi,ji->bj", x, self.w)

    with pytest.raises(counting.CountingError, match="einsum"):
        _ours(Einsum, (1, 4))
    before = profiling.cache_stats()["fvcore_fallbacks"]
    prof = profiling.analyze_module(Einsum, (1, 4))
    assert profiling.cache_stats()["fvcore_fallbacks"] == before + 1
    assert prof.summary()["macs"] == int(_fvcore(Einsum, (1, 4)).total()) == 24


def test_counting_leaves_the_model_without_hooks():
    with on_meta_device():
        model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
    counting.count_macs(model, torch.zeros(1, 1, 5, 5, device="meta"))
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_jit_names():
    assert counting.jit_name(torch.conv2d) == "aten::_convolution"
    assert counting.jit_name(torch.Tensor.__iadd__) == "aten::add_"
    assert counting.jit_name(torch.Tensor.__add__) == "aten::add"
    assert counting.jit_name(torch.Tensor.dim) is None


def test_forward_costs_equal_the_full_analysis_and_are_cached():
    cfg = preset_config("resnet18", "small")
    before = profiling.cache_stats()
    light = profiling.forward_costs(cfg)
    after = profiling.cache_stats()
    assert after["forward_computed"] == before["forward_computed"] + 1
    assert after["computed"] == before["computed"]  # no full analysis for the light one
    assert profiling.forward_costs(cfg) == light
    assert profiling.cache_stats()["forward_disk_hits"] == after["forward_disk_hits"] + 1
    full = profiling.analyze(cfg, cache=False).summary()
    assert light == {k: full[k] for k in profiling.FORWARD_KEYS}


def test_forward_costs_on_a_home_that_cannot_be_written(cnncompare_home):
    cnncompare_home.mkdir(parents=True, exist_ok=True)
    (cnncompare_home / "cache").write_text("a file where the cache folder would go")
    before = profiling.cache_stats()["forward_computed"]
    assert profiling.forward_costs("lenet")["params"] == 61_706
    assert profiling.forward_costs("lenet")["macs"] == 416_520
    assert profiling.cache_stats()["forward_computed"] == before + 2  # nothing kept
    assert profiling.analyze("lenet").summary()["macs"] == 416_520
