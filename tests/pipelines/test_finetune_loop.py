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
        row = loop.record(state, cm, float(np.mean(losses)), epoch=epoch, phase="full", lr=0.0, steps=len(losses),
                          seconds=0.0, patience=2)
    assert cm.sum() == 64 and row["val_balanced_accuracy"] > 0.9, cm  # the classes are separable
    assert state.epoch == 4 and state.best >= row["val_balanced_accuracy"] and state.history[-1] == row
    loop.checkpoint(tmp_path, model, opt, state)
    again = Toy()
    restored, opt_state = loop.restore(again, tmp_path)
    assert restored.epoch == state.epoch and restored.resumed_from == [state.epoch] and opt_state["param_groups"]
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)


def test_early_stopping_and_the_one_cycle_rate():
    state = loop.LoopState(best=0.9, best_epoch=1)
    worse = np.array([[5, 5], [5, 5]])
    loop.record(state, worse, 1.0, epoch=1, phase="full", lr=0.0, steps=1, seconds=0, patience=2)
    assert not state.stopped_early and state.bad_epochs == 1
    loop.record(state, worse, 1.0, epoch=2, phase="full", lr=0.0, steps=1, seconds=0, patience=2)
    assert state.stopped_early and state.best_epoch == 1
    opt = torch.optim.SGD([{"params": [torch.zeros(1, requires_grad=True)], "peak_lr": 1.0}], lr=1.0)
    assert loop.set_lr(opt, 0.3) == 1.0 and loop.set_lr(opt, 0.0) < 0.05 and loop.set_lr(opt, 1.0) < 1e-3
