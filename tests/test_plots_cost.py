"""The cost and benchmark figure builders: one trace per model, its colour, units on axes."""

from __future__ import annotations

import pandas as pd

from cnncompare import plots

COSTS = pd.DataFrame({
    "model": ["lenet", "resnet18"], "params": [61_706, 11_689_512],
    "macs": [416_520, 1_819_065_856], "flops": [833_040, 3_628_146_688],
    "param_mb": [0.25, 46.8], "activation_mb": [0.06, 20.7],
})
BENCH = pd.DataFrame({
    "model": ["lenet", "lenet", "resnet18", "resnet18"], "batch_size": [1, 8, 1, 8],
    "median_ms": [0.3, 0.5, 20.0, 120.0], "throughput": [3333.0, 16000.0, 50.0, 66.7],
})


def test_cost_bars_one_panel_per_metric_in_model_colours():
    fig = plots.cost_bars(COSTS)
    assert len(fig.data) == 5
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["parameters", "MACs / image", "FLOPs / image", "parameters (MB)",
                      "activations (MB / image)"]
    assert list(fig.data[0].marker.color) == [plots.model_color("lenet"),
                                              plots.model_color("resnet18")]
    assert fig.layout.yaxis.type == "log"


def test_bubble_and_batch_curves_label_their_axes():
    bubble = plots.macs_params_bubble(COSTS)
    assert "parameters" in bubble.layout.xaxis.title.text
    assert "MACs" in bubble.layout.yaxis.title.text
    # The bubble size is the activation estimate, with what it assumes.
    assert "float32" in plots.axis_label("activation_mb")
    assert "in-place" in plots.axis_label("activation_mb")
    curves = plots.batch_curves(BENCH, "throughput")
    assert [t.name for t in curves.data] == ["lenet", "resnet18"]
    assert curves.data[1].line.color == plots.model_color("resnet18")
    assert curves.layout.yaxis.title.text.startswith("throughput (images/s)")
    assert curves.layout.xaxis.title.text.startswith("batch size (images)")


def test_module_breakdown_and_layer_bars():
    modules = pd.DataFrame({"model": ["lenet"] * 2, "module": ["conv1", "fc1"],
                            "type": ["Conv2d", "Linear"], "params": [156, 48_120],
                            "macs": [117_600, 48_000], "share": [0.71, 0.29]})
    fig = plots.module_breakdown(modules)
    assert list(fig.data[0].text) == ["conv1", "fc1"]
    assert "fraction" in fig.layout.xaxis.title.text
    layers = pd.DataFrame({"layer": ["conv1", "act1", "fc1"], "type": ["Conv2d", "ReLU", "Linear"],
                           "output_shape": ["6x28x28", "6x28x28", "120"],
                           "macs": [117_600, 0, 48_000]})
    bars = plots.layer_cost_bars(layers, "lenet")
    assert list(bars.data[0].x) == ["conv1", "fc1"]  # layers without MACs left out
    assert "MACs" in bars.layout.yaxis.title.text
