"""The fine-tuning loop's steps, without Ray: a toy network with the transformers calling
convention (``net(pixel_values=x).logits``) learns two classes of synthetic patches."""

import types

import numpy as np
import torch

from raylib.pipelines.finetune import loop

CONFIG = {"lr": 0.05, "backbone_lr_factor": 0.1, "weight_decay": 0.0, "steps_per_epoch": 8, "augment": True,
          "jitter": 0.05}


class Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4),
                                        torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        self.classifier = torch.nn.Linear(4, 2)

    def forward(self, pixel_values):
        return types.SimpleNamespace(logits=self.classifier(self.body(pixel_values)))


def _batches(n_batches=8, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        y = torch.randint(0, 2, (size,), generator=g)
        x = torch.rand((size, 3, 8, 8), generator=g) * 0.2 + y.view(-1, 1, 1, 1) * 0.6  # bright = class 1
        out.append((x, y))
    return out


def test_phases_train_evaluate_record_and_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = Toy()
    heads = {"classifier.weight", "classifier.bias"}
    norm = (torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1))
    cpu = torch.device("cpu")
    net, opt = loop.start_phase(model, heads, True, CONFIG)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == heads and len(opt.param_groups) == 1
    bn_mean = model.body[1].running_mean.clone()
    crit = torch.nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(1)
    kw = dict(config=CONFIG, head_names=heads, norm=norm, criterion=crit, gen=gen, device=cpu)
    losses, lr = loop.train_epoch(model, net, opt, _batches(), frozen=True, progress=(0, 1), **kw)
    assert len(losses) == CONFIG["steps_per_epoch"] and lr > 0
    assert torch.equal(model.body[1].running_mean, bn_mean)  # frozen: batch-norm statistics as pretrained
    net, opt = loop.start_phase(model, heads, False, CONFIG)
    assert all(p.requires_grad for p in model.parameters()) and len(opt.param_groups) == 2
    assert opt.param_groups[0]["peak_lr"] == CONFIG["lr"] * CONFIG["backbone_lr_factor"]
    state = loop.LoopState()
    for epoch in range(1, 4):
        losses, _ = loop.train_epoch(model, net, opt, _batches(seed=epoch), frozen=False, progress=(epoch - 1, 3), **kw)
        cm = loop.evaluate(model, _batches(4, seed=99), 2, norm, cpu).numpy()
        row = loop.record(state, cm, float(losses.mean()), epoch=epoch, phase="full", lr=0.0, steps=len(losses),
                          seconds=0.0, patience=2)
    assert cm.sum() == 64 and row["val_balanced_accuracy"] > 0.9, cm  # the classes are separable
    assert state.epoch == 4 and state.best >= row["val_balanced_accuracy"] and state.history[-1] == row
    loop.checkpoint(tmp_path, model, opt, state)
    again = Toy()
    restored, opt_state = loop.restore(again, tmp_path)
    assert restored.epoch == state.epoch and restored.resumed_from == [state.epoch] and opt_state["param_groups"]
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)


def test_every_tensor_a_step_makes_follows_the_models_device():
    """The steps on the ``meta`` device (tensors without data, as a GPU's are to the host):
    a tensor made on the CPU beside it, or a number read back mid-epoch, fails here as it
    fails on a GPU (``finetune --gpu`` stopped in its first evaluation: the confusion
    matrix on the CPU, the predictions on cuda:0)."""
    meta = torch.device("meta")
    torch.manual_seed(0)
    model = Toy().to(meta)
    heads = {"classifier.weight", "classifier.bias"}
    norm = (torch.zeros(1, 3, 1, 1, device=meta), torch.ones(1, 3, 1, 1, device=meta))
    crit = torch.nn.CrossEntropyLoss(weight=torch.ones(2, device=meta), label_smoothing=0.1)
    kw = dict(config=CONFIG, head_names=heads, norm=norm, criterion=crit, gen=torch.Generator().manual_seed(1),
              device=meta)
    on_device = [(x.to(meta), y.to(meta)) for x, y in _batches(3)]  # as Ray Train hands batches over
    for frozen in (True, False):
        net, opt = loop.start_phase(model, heads, frozen, CONFIG)
        losses, lr = loop.train_epoch(model, net, opt, on_device, frozen=frozen, progress=(0, 1), **kw)
        assert losses.device == meta and losses.shape == (3,) and lr > 0
        on_host = _batches(2)  # batches the loop moves itself
        losses, _ = loop.train_epoch(model, net, opt, on_host, frozen=frozen, progress=(0, 1), **kw)
        assert losses.device == meta
    for batches in (on_device, _batches(2)):
        cm = loop.evaluate(model, batches, 2, norm, meta)
        assert cm.device == meta and cm.shape == (2, 2) and cm.dtype == torch.int64


def test_the_epochs_loss_and_confusion_matrix_read_back_once():
    losses = torch.tensor([1.0, 2.0, 4.5])
    assert loop._mean_loss(losses, 1) == 2.5 and np.isnan(loop._mean_loss(torch.zeros(0), 1))
    cm = loop._sum_over_workers(torch.tensor([[3, 1], [0, 2]]), 1)
    assert isinstance(cm, np.ndarray) and cm.tolist() == [[3, 1], [0, 2]]


def test_early_stopping_and_the_one_cycle_rate():
    state = loop.LoopState(best=0.9, best_epoch=1)
    worse = np.array([[5, 5], [5, 5]])
    loop.record(state, worse, 1.0, epoch=1, phase="full", lr=0.0, steps=1, seconds=0, patience=2)
    assert not state.stopped_early and state.bad_epochs == 1
    loop.record(state, worse, 1.0, epoch=2, phase="full", lr=0.0, steps=1, seconds=0, patience=2)
    assert state.stopped_early and state.best_epoch == 1
    opt = torch.optim.SGD([{"params": [torch.zeros(1, requires_grad=True)], "peak_lr": 1.0}], lr=1.0)
    assert loop.set_lr(opt, 0.3) == 1.0 and loop.set_lr(opt, 0.0) < 0.05 and loop.set_lr(opt, 1.0) < 1e-3
