"""The trainer: configs and keys, accuracy targets, determinism, progress, cancel, resume."""

from __future__ import annotations

import dataclasses
import threading

import pandas as pd
import pytest
import torch
from torch import nn

from cnncompare.runtime import AUX_WEIGHT, loss_and_logits
from cnncompare.store import ResultsStore
from cnncompare.training import (
    TrainConfig,
    _batches,
    build_optimizer,
    build_scheduler,
    train_or_load,
)

TINY = dict(train_size=200, test_size=100)


def test_config_validation_is_clear():
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        TrainConfig("lenet", batch_size=0)
    with pytest.raises(ValueError, match="epochs must be at most 1,000, got 1,000,000,000"):
        TrainConfig("lenet", epochs=1_000_000_000)
    with pytest.raises(ValueError, match="amp must be one of auto, on, off"):
        TrainConfig("lenet", amp="fp8")
    with pytest.raises(ValueError, match="'num_classes' is set by the configuration"):
        TrainConfig("lenet", model_kwargs={"num_classes": 3})
    with pytest.raises(ValueError, match="googlenet does not accept the model argument"):
        TrainConfig("googlenet", model_kwargs={"colour": 1}).key()
    with pytest.raises(ValueError, match="Unknown device 'cpu:abc'"):
        TrainConfig("lenet").key(device="cpu:abc")
    with pytest.raises(ValueError, match="optimizer must be one of sgd, adam, adamw"):
        TrainConfig("lenet", optimizer="rmsprop")
    with pytest.raises(ValueError, match="lr must be"):
        TrainConfig("lenet", lr=-1.0)
    with pytest.raises(ValueError, match="Unknown model 'lenett'"):
        TrainConfig("lenett").key()
    with pytest.raises(ValueError, match="needs an input of at least"):
        TrainConfig("vgg11", input_size=8).key()


def test_key_is_the_canonical_configuration():
    base = TrainConfig("resnet18", epochs=2, **TINY)
    assert base.key() == TrainConfig("resnet18", epochs=2, **TINY).key()
    # the defaults resolve to the model's small width: saying it explicitly is the same run
    assert base.key() == TrainConfig("resnet18", epochs=2, width=0.25, input_size=28, **TINY).key()
    for change in (dict(seed=1), dict(epochs=3), dict(width=0.5), dict(lr=0.01),
                   dict(in_channels=3), dict(train_size=201), dict(val_size=30),
                   dict(augment=True), dict(scheduler="constant")):
        assert TrainConfig(**{**base.as_dict(), **change}).key() != base.key(), change
    resolved = base.resolve()
    assert resolved.canonical["model"]["width"] == 0.25
    assert resolved.canonical["data"]["train_size"] == 200
    assert resolved.canonical["data"]["val_size"] == 20  # 10% of the training images
    assert "device" not in str(resolved.canonical)
    assert hash(base) == hash(TrainConfig.from_dict(base.as_dict()))


def test_precision_is_part_of_the_key():
    """bf16 autocast, fp16 autocast and float32 are different runs; "auto" is whichever the
    device runs natively, so it shares its key with that precision."""
    from cnncompare.runtime import autocast_dtype, precision_name

    off = TrainConfig("lenet", amp="off", **TINY).resolve(device="cpu")
    on = TrainConfig("lenet", amp="on", **TINY).resolve(device="cpu")
    auto = TrainConfig("lenet", **TINY).resolve(device="cpu")
    assert (off.precision, on.precision) == ("float32", "bfloat16")
    assert off.run_id != on.run_id
    assert off.settings["precision"] == "float32" and on.canonical["precision"] == "bfloat16"
    native = precision_name(autocast_dtype("cpu", "auto"))
    assert auto.precision == native
    assert auto.run_id == (on.run_id if native == "bfloat16" else off.run_id)
    assert TrainConfig("lenet", amp=False) == TrainConfig("lenet", amp="off")


def test_defaults_come_from_the_dataset_and_the_models_small_configuration():
    r = TrainConfig("vgg11", **TINY).resolve()
    mc = r.model_config
    assert (mc.input_size, mc.in_channels, mc.width, mc.stem) == (28, 1, 0.125, "small")
    assert (r.data.train_size, r.data.test_size) == (200, 100)
    assert TrainConfig("lenet").resolve().data.train_size == 1437


@pytest.mark.slow
def test_lenet_reaches_the_digits_target():
    r = train_or_load(TrainConfig("lenet", epochs=10), device="cpu")
    assert r.status == "finished" and not r.cached
    assert r.test_acc >= 0.93, r.history
    assert list(r.history["epoch"]) == list(range(1, 11))
    assert r.history["images_per_s"].gt(0).all() and r.train_seconds > 0


@pytest.mark.slow
def test_mnist_test_split_target(mnist_test_root):
    r = train_or_load(TrainConfig("lenet", dataset="mnist", epochs=5, train_size=8000,
                                  test_size=2000), data_root=mnist_test_root, device="cpu")
    assert r.test_acc >= 0.97, r.history
    assert r.data_meta["variant"] == "test-split"


def test_same_seed_same_run_on_cpu(tmp_path):
    cfg = TrainConfig("lenet", epochs=2, **TINY)
    a = train_or_load(cfg, store=ResultsStore(tmp_path / "a"), device="cpu")
    b = train_or_load(cfg, store=ResultsStore(tmp_path / "b"), device="cpu")
    cols = ["train_loss", "train_acc", "test_loss", "test_acc"]
    pd.testing.assert_frame_equal(a.history[cols], b.history[cols])
    ma, _ = ResultsStore(tmp_path / "a").load_model(a.run_id)
    mb, _ = ResultsStore(tmp_path / "b").load_model(b.run_id)
    for (k, va), vb in zip(ma.state_dict().items(), mb.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
    c = train_or_load(TrainConfig("lenet", epochs=2, seed=1, **TINY),
                      store=ResultsStore(tmp_path / "c"), device="cpu")
    assert not a.history[cols].equals(c.history[cols])


def test_progress_events_and_cancel_keep_finished_epochs():
    events: list[dict] = []
    cancel = threading.Event()

    def progress(e):
        events.append(e)
        if e["kind"] == "epoch" and e["epoch"] == 1:
            cancel.set()

    cfg = TrainConfig("lenet", epochs=3, batch_size=50, **TINY)
    r = train_or_load(cfg, device="cpu", progress=progress, cancel=cancel)
    assert r.status == "cancelled" and r.epochs_done == 1 and not r.cached
    batches = [e for e in events if e["kind"] == "batch"]
    assert [e["batch"] for e in batches] == [1, 2, 3, 4]
    assert all(e["batches"] == 4 and e["epochs"] == 3 and e["epoch"] == 1 for e in batches)
    (epoch,) = [e for e in events if e["kind"] == "epoch"]
    assert {"train_loss", "train_acc", "test_loss", "test_acc", "seconds",
            "images_per_s"} <= set(epoch)
    assert events[-1]["kind"] == "done" and events[-1]["status"] == "cancelled"
    stored = ResultsStore().run(r.run_id)
    assert stored.status == "unfinished" and stored.epochs_done == 1

    # The next call resumes from epoch 2 and ends where an uninterrupted run ends.
    again: list[dict] = []
    r2 = train_or_load(cfg, device="cpu", progress=again.append)
    assert r2.status == "finished" and r2.resumed_from == 1
    assert [e["epoch"] for e in again if e["kind"] == "epoch"] == [2, 3]
    fresh = train_or_load(cfg, device="cpu", store=ResultsStore(ResultsStore().home / "x"))
    cols = ["train_loss", "test_loss", "test_acc"]
    pd.testing.assert_frame_equal(r2.history[cols], fresh.history[cols])


def test_cancel_accepts_a_callable_and_stops_before_any_epoch():
    r = train_or_load(TrainConfig("lenet", epochs=2, **TINY), device="cpu", cancel=lambda: True)
    assert r.status == "cancelled" and r.epochs_done == 0 and r.test_acc is None
    assert not ResultsStore().has(r.run_id)  # nothing finished, nothing kept


def test_googlenet_aux_losses_are_weighted():
    crit = nn.CrossEntropyLoss()
    y = torch.tensor([0, 1])
    main, a2, a1 = torch.randn(2, 3), torch.randn(2, 3), torch.randn(2, 3)
    loss, logits = loss_and_logits((main, a2, a1), y, crit)
    expect = crit(main, y) + AUX_WEIGHT * (crit(a2, y) + crit(a1, y))
    assert torch.allclose(loss, expect) and logits is main
    r = train_or_load(TrainConfig("googlenet", epochs=1, train_size=64, test_size=32,
                                  model_kwargs={"aux_logits": True}), device="cpu")
    assert r.status == "finished" and r.model_config["extra"] == {"aux_logits": True}
    assert r.train_loss == r.train_loss  # finite, not NaN


@pytest.mark.parametrize("name", ["alexnet", "nin", "vgg11_bn", "resnet18", "densenet121"])
def test_every_family_trains_at_its_small_configuration(name):
    from cnncompare.registry import model_info

    small = model_info(name).small
    r = train_or_load(TrainConfig(name, epochs=1, train_size=48, test_size=20,
                                  input_size=small["input_size"],
                                  in_channels=small["in_channels"]), device="cpu")
    assert r.status == "finished" and 0 <= r.test_acc <= 1
    assert r.model_config["width"] == small["width"]


def test_cpu_mixed_precision_path_runs():
    r = train_or_load(TrainConfig("lenet", epochs=1, **TINY), device="cpu", amp=True,
                      channels_last=False)
    assert r.status == "finished" and r.test_acc > 0.2


def test_schedulers_and_optimizers():
    p = [nn.Parameter(torch.zeros(1))]
    # (schedule, epochs, steps per epoch, lr at every step): stepped once per batch
    cases = (
        ("step", 4, 5, [1.0] * 10 + [0.1] * 5 + [0.01] * 5),
        ("cosine", 4, 1, [1.0, 0.8536, 0.5, 0.1464]),
        # 25 steps: warm-up over the first epoch (5 steps, at most 20% of them), hold,
        # then a linear decay over the last 30% (7 steps) towards 0
        ("warmup_stable_decay", 5, 5,
         [0.2, 0.4, 0.6, 0.8, 1.0] + [1.0] * 14 + [k / 7 for k in range(6, 0, -1)]),
        ("warmup_cosine", 5, 5, [0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 0.9938]),  # its first 7 steps
        # 2 epochs of 5 steps: the warm-up is cut to 20% of the 10 steps
        ("warmup_stable_decay", 2, 5, [0.5] + [1.0] * 7 + [2 / 3, 1 / 3]),
    )
    for name, epochs, steps, expect in cases:
        cfg = TrainConfig("lenet", epochs=epochs, lr=1.0, scheduler=name)
        opt = build_optimizer(cfg, p, torch.device("cpu"))
        sched = build_scheduler(cfg, opt, steps)
        lrs = []
        for _ in range(len(expect)):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        assert lrs == pytest.approx(expect, abs=1e-4), name
    assert TrainConfig("lenet").scheduler == "warmup_stable_decay"  # the default recipe
    assert build_scheduler(TrainConfig("lenet", scheduler="constant"), opt) is None
    sgd = build_optimizer(TrainConfig("lenet", optimizer="sgd", weight_decay=5e-4), p,
                          torch.device("cpu"))
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.9
    assert isinstance(build_optimizer(TrainConfig("lenet", optimizer="adamw"), p,
                                      torch.device("cpu")), torch.optim.AdamW)


def test_a_last_batch_of_one_is_dropped():
    assert _batches(129, 64) == [(0, 64), (64, 128)]
    assert _batches(130, 64)[-1] == (128, 130)
    assert _batches(1, 64) == [(0, 1)]


def test_large_datasets_are_normalised_per_batch_with_the_same_result(monkeypatch, tmp_path):
    import cnncompare.training as training

    cfg = TrainConfig("lenet", epochs=1, **TINY)
    whole = train_or_load(cfg, device="cpu", store=ResultsStore(tmp_path / "a"))
    monkeypatch.setattr(training, "PRENORMALIZE_BYTES", 0)
    per_batch = train_or_load(cfg, device="cpu", store=ResultsStore(tmp_path / "b"))
    cols = ["train_loss", "test_loss", "test_acc"]
    pd.testing.assert_frame_equal(whole.history[cols], per_batch.history[cols])


def _epoch(n: int, val: float, test: float, val_loss: float = 1.0) -> dict:
    return {"epoch": n, "train_loss": 1.0, "train_acc": 0.5, "val_loss": val_loss,
            "val_acc": val, "test_loss": 1.0 - test, "test_acc": test, "seconds": 0.1}


def test_the_reported_epoch_is_chosen_on_validation_only():
    """Epoch 2 has the best test accuracy, epoch 3 the best validation accuracy: the run
    reports epoch 3's test accuracy, and the last epoch's beside it."""
    from cnncompare.store import _summary_from, select_epoch

    history = [_epoch(1, 0.50, 0.55), _epoch(2, 0.70, 0.95), _epoch(3, 0.80, 0.75),
               _epoch(4, 0.60, 0.90)]
    assert select_epoch(history)["epoch"] == 3
    row = _summary_from(history)
    assert (row["selected_epoch"], row["test_acc"], row["val_acc"]) == (3, 0.75, 0.80)
    assert (row["final_test_acc"], row["epochs_done"]) == (0.90, 4)
    assert 0.95 not in row.values()  # the best test accuracy is never reported
    # ties on validation accuracy: the lower validation loss, then the earlier epoch
    tied = [_epoch(1, 0.8, 0.1, 0.5), _epoch(2, 0.8, 0.2, 0.4), _epoch(3, 0.8, 0.3, 0.4)]
    assert select_epoch(tied)["epoch"] == 2
    # no validation metrics (a run stored before validation splits): the last epoch
    legacy = [{k: v for k, v in h.items() if not k.startswith("val")} for h in history]
    assert select_epoch(legacy) is None
    old = _summary_from(legacy)
    assert old["selected_epoch"] is None and old["test_acc"] == old["final_test_acc"] == 0.90


def test_a_trained_run_reports_its_best_validation_epoch():
    r = train_or_load(TrainConfig("lenet", epochs=3, **TINY), device="cpu")
    h = r.history
    assert {"val_loss", "val_acc", "test_acc", "train_acc"} <= set(h.columns)
    best = int(h.loc[h["val_acc"].idxmax(), "epoch"])  # first epoch of the best val accuracy
    assert r.selected_epoch == best
    assert r.test_acc == h.set_index("epoch").loc[best, "test_acc"]
    assert r.val_acc == h["val_acc"].max()
    assert r.final_test_acc == h["test_acc"].iloc[-1]
    assert r.data_meta["val_size"] == 20 and r.data_meta["train_size"] == 200
    # the confusion matrix is the selected epoch's: its trace gives the reported accuracy
    confusion = torch.tensor(r.confusion)
    assert confusion.sum() == 100 and float(confusion.trace()) / 100 == pytest.approx(r.test_acc)
    s = r.summary()
    assert {"selected_epoch", "val_acc", "final_test_acc", "precision"} <= set(s)


def test_a_float32_request_after_a_bf16_run_trains_anew():
    cfg = TrainConfig("lenet", epochs=1, **TINY)
    bf16 = train_or_load(cfg, device="cpu", amp="on")
    fp32 = train_or_load(cfg, device="cpu", amp="off")
    again = train_or_load(dataclasses.replace(cfg, amp="on"), device="cpu")
    assert (bf16.precision, fp32.precision) == ("bfloat16", "float32")
    assert not fp32.cached and fp32.run_id != bf16.run_id
    assert again.cached and again.run_id == bf16.run_id
    listing = ResultsStore().runs().set_index("run_id")
    assert listing.loc[fp32.run_id, "precision"] == "float32"
    assert listing.loc[bf16.run_id, "precision"] == "bfloat16"
    assert "amp bfloat16" in listing.loc[bf16.run_id, "device"]


def test_augmentation_is_seeded_and_keeps_shapes_and_layout():
    from cnncompare.augment import augment_batch

    x = torch.randn(16, 1, 28, 28)
    a = augment_batch(x, False, torch.Generator().manual_seed(1))
    b = augment_batch(x, False, torch.Generator().manual_seed(1))
    c = augment_batch(x, False, torch.Generator().manual_seed(2))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    # natural images: whole-pixel shifts and flips only, so every output value is an input
    # value of the same image and channel (reflection padding)
    rgb = torch.randn(8, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    out = augment_batch(rgb, True, torch.Generator().manual_seed(0))
    assert out.shape == rgb.shape and out.is_contiguous(memory_format=torch.channels_last)
    for i in range(8):
        assert torch.isin(out[i, 0], rgb[i, 0]).all()
    assert not torch.equal(out, rgb)


def test_augment_is_part_of_the_key_and_trains():
    plain = train_or_load(TrainConfig("lenet", epochs=1, **TINY), device="cpu")
    aug = train_or_load(TrainConfig("lenet", epochs=1, augment=True, **TINY), device="cpu")
    assert aug.run_id != plain.run_id and not aug.cached
    assert aug.record.settings["augment"] is True
    assert aug.train_loss != plain.train_loss  # other images went through the network


def test_a_run_that_would_not_fit_in_memory_is_refused_before_training(monkeypatch):
    from cnncompare import benchmark

    cfg = TrainConfig("lenet", epochs=1, batch_size=64, **TINY)
    monkeypatch.setattr(benchmark, "free_memory_mb", lambda device: 1.0)  # a 1 MB machine
    with pytest.raises(ValueError, match=r"at batch size 64 needs about [\d.,]+ MB .* more "
                                         r"than 80% of the 1 MB free on cpu"):
        train_or_load(cfg, device="cpu")
    assert ResultsStore().runs().empty  # nothing started, nothing stored
    monkeypatch.setattr(benchmark, "free_memory_mb", lambda device: None)  # unknown: allowed
    assert train_or_load(cfg, device="cpu").status == "finished"
