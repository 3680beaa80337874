"""One Ray Train worker's share of fine-tuning, as named steps.

``train_loop`` (the ``train_loop_per_worker``) is only the order of the steps; each step is a
plain function of torch objects, so it runs (and is tested) without Ray:

- ``build`` / ``restore``: the classifier, and the state, weights and optimizer moments of
  the latest checkpoint when the run resumes;
- ``start_phase``: frozen backbone (the classifier alone learns, batch-norm statistics stay
  as pretrained) or the whole network, with discriminative learning rates (AdamW);
- ``train_epoch``: one-cycle learning rate, dihedral views and radiometric jitter, the same
  number of steps on every worker;
- ``evaluate``: each worker scores its share of the validation batches; confusion matrices
  (and the loss) are summed over workers;
- ``record``: balanced accuracy, the best epoch, early stopping (patience);
- ``checkpoint``: rank 0 writes weights (safetensors), optimizer moments and the state.

Every tensor a step makes is on the model's ``device`` (Ray Train hands the batches over on
it), and a step reads no number back from the device until its end (one wait per epoch,
not one per step); tests/pipelines/test_finetune_loop.py runs the steps on the ``meta``
device to hold both.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from raylib.models.augment import radiometric_jitter, random_dihedral
from raylib.models.finetune_net import build_classifier, classifier_parameter_names
from raylib.pipelines.common.folder_shipping import local_folder
from raylib.pipelines.finetune.recipe import one_cycle


@dataclass
class LoopState:
    """What a checkpoint carries besides the weights (``state.json``)."""

    epoch: int = 0
    best: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped_early: bool = False
    phase: str | None = None
    history: list = field(default_factory=list)
    resumed_from: list = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "LoopState":
        return cls(**json.loads(text))


def build(config: dict, backbone_dir: str):
    """The classifier (same initialisation on every worker) and the names of its head's parameters."""
    import torch

    torch.manual_seed(config["seed"])
    model = build_classifier(backbone_dir, config["classes"], len(config["mean"]), config["rgb"])
    return model, set(classifier_parameter_names(model))


def restore(model, folder: str | Path | None) -> tuple[LoopState, dict | None]:
    """Weights, state and optimizer moments of a checkpoint folder (a fresh state without one)."""
    if folder is None:
        return LoopState(), None
    import torch
    from safetensors.torch import load_file

    folder = Path(folder)
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    state = LoopState.from_json((folder / "state.json").read_text())
    opt_state = torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True)
    state.resumed_from.append(state.epoch)
    return state, opt_state


def start_phase(model, head_names: set, frozen: bool, config: dict, wrap=None, opt_state: dict | None = None,
                state_phase: str | None = None):
    """(network to train, optimizer) for the frozen or the full phase; ``wrap`` wraps the
    model for data parallelism; the optimizer resumes ``opt_state`` when it is this phase's."""
    import torch

    phase = "frozen" if frozen else "full"
    for n, p in model.named_parameters():
        p.requires_grad_(n in head_names or not frozen)
    net = wrap(model) if wrap else model
    head = [p for n, p in model.named_parameters() if n in head_names]
    groups = [{"params": head, "peak_lr": config["lr"]}]
    if not frozen:
        body = [p for n, p in model.named_parameters() if n not in head_names]
        groups.insert(0, {"params": body, "peak_lr": config["lr"] * config["backbone_lr_factor"]})
    optimizer = torch.optim.AdamW(groups, lr=config["lr"], weight_decay=config["weight_decay"])
    if opt_state is not None and state_phase == phase:
        optimizer.load_state_dict(opt_state)  # AdamW moments of the same phase
    return net, optimizer


def set_lr(optimizer, t: float) -> float:
    """The one-cycle learning rate at ``t`` (0..1 of the phase) on every parameter group."""
    for g in optimizer.param_groups:
        g["lr"] = one_cycle(t, g["peak_lr"])
    return optimizer.param_groups[-1]["lr"]


def train_mode(model, head_names: set, frozen: bool) -> None:
    """Training mode; with a frozen backbone its batch-norm statistics stay as pretrained."""
    model.train()
    if frozen:
        for n, m in model.named_modules():
            if n and not any(h.startswith(n + ".") or h == n for h in head_names):
                m.eval()


def train_epoch(model, net, optimizer, batches, *, config: dict, frozen: bool, head_names: set, progress: tuple,
                norm: tuple, criterion, gen, device) -> tuple:
    """One epoch over ``batches`` of (pixels, labels); ``progress`` = (epoch within the
    phase, the phase's epochs); ``norm`` = (mean, std) tensors. Returns the steps' losses
    (a tensor on ``device``) and the last learning rate."""
    import torch

    train_mode(model, head_names, frozen)
    spe, cuda = config["steps_per_epoch"], device.type == "cuda"
    done, p_len = progress
    mean, std = norm
    losses, lr = [], 0.0
    for step, (x, y) in enumerate(batches):
        if step >= spe:  # every worker takes the same number of steps
            break
        lr = set_lr(optimizer, (done * spe + step) / max(1, p_len * spe))
        x = x.float()
        if config["augment"]:
            x = random_dihedral(x, gen)
        x = radiometric_jitter(x, config["jitter"], gen)
        x = (x.to(device, non_blocking=cuda) - mean) / std
        y = y.to(device, non_blocking=cuda)
        if cuda:
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                logits = net(pixel_values=x).logits
        else:
            logits = net(pixel_values=x).logits
        loss = criterion(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    return (torch.stack(losses) if losses else torch.zeros(0, device=device)), lr


def evaluate(model, batches, k_classes: int, norm: tuple, device, rank: int = 0, world: int = 1):
    """Confusion matrix (rows: true; a tensor on ``device``) of this worker's share of the
    validation ``batches``, scored in float32 as the map scores by default."""
    import torch

    from raylib.models.device import inference

    mean, std = norm
    model.eval()
    cm = torch.zeros((k_classes, k_classes), dtype=torch.int64, device=device)
    with inference(device.type, "fp32"):
        for i, (x, y) in enumerate(batches):
            if i % world != rank:
                continue
            x = (x.to(device).float() - mean) / std
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            pred = model(pixel_values=x).logits.argmax(1)
            y = y.to(device)
            cm.index_put_((y, pred), torch.ones_like(pred, dtype=torch.int64), accumulate=True)
    return cm


def record(state: LoopState, cm: np.ndarray, train_loss: float, *, epoch: int, phase: str, lr: float, steps: int,
           seconds: float, patience: int) -> dict:
    """Score the epoch (balanced accuracy over the classes with validation rows), keep the
    best, stop early after ``patience`` epochs without a better one; the history row."""
    support = cm.sum(1)
    recall = np.diag(cm)[support > 0] / support[support > 0]
    val_bacc = float(recall.mean()) if len(recall) else 0.0
    val_acc = float(np.trace(cm) / max(1, cm.sum()))
    if val_bacc > state.best:
        state.best, state.best_epoch, state.bad_epochs = val_bacc, epoch + 1, 0
    else:
        state.bad_epochs += 1
    if patience and state.bad_epochs >= patience:
        state.stopped_early = True
    state.epoch, state.phase = epoch + 1, phase
    row = {"epoch": epoch + 1, "phase": phase, "train_loss": train_loss, "val_balanced_accuracy": val_bacc,
           "val_accuracy": val_acc, "lr": lr, "seconds": round(seconds, 2), "steps": steps}
    state.history.append(row)
    return row


def checkpoint(folder: str | Path, model, optimizer, state: LoopState) -> None:
    """Weights (safetensors), optimizer moments and the state into ``folder``."""
    import torch
    from safetensors.torch import save_file

    folder = Path(folder)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
              str(folder / "model.safetensors"))
    torch.save(optimizer.state_dict(), folder / "optimizer.pt")
    (folder / "state.json").write_text(state.to_json())


def _collate():
    """Ray Data collate function: a numpy batch -> (pixels, labels) tensors (copied: the
    batch is a read-only view of the object store)."""
    import torch
    from ray.data.collate_fn import NumpyBatchCollateFn

    class PixelsLabels(NumpyBatchCollateFn):
        def __call__(self, batch: dict):
            return torch.from_numpy(np.array(batch["pixels"])), torch.from_numpy(np.array(batch["label"]))

    return PixelsLabels()


def _mean_loss(losses, world: int) -> float:
    """The epoch's mean training loss over every worker's steps (``losses``: a tensor on the
    worker's device); the epoch's one read back of the loss."""
    import torch

    t = torch.stack([losses.double().sum(), torch.tensor(float(len(losses)), dtype=torch.float64,
                                                           device=losses.device)])
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(t)
    total, n = t.cpu().tolist()
    return total / n if n else float("nan")


def _sum_over_workers(cm, world: int):
    """The confusion matrices of every worker, summed (on the workers' device), as numpy."""
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(cm)
    return cm.cpu().numpy()


def train_loop(config: dict) -> None:
    """``train_loop_per_worker``: the steps above, in order, with Ray Train's context,
    dataset shards, checkpoints and reports."""
    import tempfile

    import ray.train
    import ray.train.torch
    import torch

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(config["torch_threads"])
    device = ray.train.torch.get_device()
    cuda = device.type == "cuda"
    model, head_names = build(config, local_folder(config["backbone"], "ray-backbones"))
    ckpt = ray.train.get_checkpoint()
    if ckpt:
        with ckpt.as_directory() as d:
            state, opt_state = restore(model, d)
    else:
        state, opt_state = restore(model, None)
    model.to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    norm = (torch.tensor(config["mean"], device=device).view(1, -1, 1, 1),
            torch.tensor(config["std"], device=device).view(1, -1, 1, 1))
    criterion = torch.nn.CrossEntropyLoss(weight=torch.tensor(config["class_weights"], device=device),
                                          label_smoothing=config["label_smoothing"])
    gen = torch.Generator().manual_seed(config["seed"] * 1000 + rank)
    train_shard, val_shard = ray.train.get_dataset_shard("train"), ray.train.get_dataset_shard("val")
    epochs, freeze = config["epochs"], config["freeze_epochs"]
    wrap = (lambda m: torch.nn.parallel.DistributedDataParallel(m, device_ids=[device.index] if cuda else None)) \
        if world > 1 else None
    phase, net, optimizer = None, None, None
    collate = _collate()
    for epoch in range(state.epoch, epochs):
        if state.stopped_early:
            break
        t0 = time.time()
        frozen = epoch < freeze
        if phase != ("frozen" if frozen else "full"):
            phase = "frozen" if frozen else "full"
            net, optimizer = start_phase(model, head_names, frozen, config, wrap, opt_state, state.phase)
            opt_state = None
        p_start, p_len = (0, freeze) if frozen else (freeze, epochs - freeze)
        batches = train_shard.iter_torch_batches(batch_size=config["batch_size"], drop_last=True, collate_fn=collate,
                                                 local_shuffle_buffer_size=config["shuffle_buffer"],
                                                 local_shuffle_seed=config["seed"] + 1000 * epoch + rank)
        losses, lr = train_epoch(model, net, optimizer, batches, config=config, frozen=frozen, head_names=head_names,
                                 progress=(epoch - p_start, p_len), norm=norm, criterion=criterion, gen=gen,
                                 device=device)
        cm = evaluate(model, val_shard.iter_torch_batches(batch_size=config["batch_size"] * 2, collate_fn=collate),
                      len(config["classes"]), norm, device, rank, world)
        cm = _sum_over_workers(cm, world)
        row = record(state, cm, _mean_loss(losses, world), epoch=epoch, phase=phase, lr=lr,
                     steps=len(losses), seconds=time.time() - t0, patience=config["patience"])
        with tempfile.TemporaryDirectory() as d:
            saved = None
            if rank == 0:
                checkpoint(d, model, optimizer, state)
                saved = ray.train.Checkpoint.from_directory(d)
            ray.train.report({**row, "stopped_early": state.stopped_early}, checkpoint=saved)
