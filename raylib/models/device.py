"""Where a model runs and with what arithmetic: the device, the precision, and the tiles'
way onto the device (``TileFeed``).

**Precision.** ``fp32`` (the default) is IEEE float32 everywhere: on CUDA that means TF32
off for cuDNN convolutions too (PyTorch leaves TF32 on for them by default), so a GPU map
gives the CPU map's answers. ``tf32`` lets convolutions and matrix products round their
inputs to TF32 (10-bit mantissa); ``bf16`` runs the network under bfloat16 autocast. Both
are faster on a GPU and change the map: their agreement with fp32 is measured in
BENCHMARKS.md ("The GPU path"), and tests/models/test_device.py holds it on this CPU.

**Tiles onto the device.** The map's read tasks send each tile in the scene's own integer
type with its scaling (``gain``, ``offset`` per band): a 64 px RGB tile is 12 KB as uint8
or 24 KB as uint16 where it was 49 KB as float32. ``TileFeed`` copies a batch into a pinned
host buffer it keeps (grown, never freed, reused batch after batch), moves it to the
device in that type, and scales it there (``raw * gain + offset``, clipped to [0, 1]: the
same float32 arithmetic as ``raster.bands.Scaler``, so the CPU path is bit for bit the
host's); resizing and normalisation follow on the device (``backbones.Preprocessor``).

**Few batch shapes.** cuDNN plans each convolution for each input shape it meets, which
stalls a GPU actor for each new shape (BENCHMARKS.md, "The GPU path"), and a map's batches
come in every size (a block's readable tiles). So off the CPU a batch goes through the
network padded with blank rows to one of a few sizes (``padded_rows``:
powers of two from 64 to 1,024, then multiples of 1,024), all planned when a model actor
starts (``batch_shapes``); a row's result does not depend on the rows beside it.
"""

from __future__ import annotations

import contextlib

import numpy as np

PRECISIONS = ("fp32", "tf32", "bf16")


def pick_device(prefer: str = "auto") -> str:
    import torch

    if prefer == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return prefer


def placed(device: str, precision: str) -> tuple[str, str]:
    """(device, precision) a model actor runs with: ``auto`` resolved, and the precision asked
    for GPU actors kept on CUDA only (a CPU runs fp32: an actor on a node without CUDA, the
    driver's first tiles)."""
    device = pick_device(device)
    return device, precision if device.startswith("cuda") else "fp32"


def set_precision(device: str, precision: str) -> None:
    """The process's float32 rules for CUDA: ``tf32`` allows TF32 in cuDNN convolutions and
    matrix products; ``fp32`` and ``bf16`` (whose autocast covers those ops) keep IEEE
    float32. A model actor holds one model, so a process-wide setting is the model's."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if not str(device).startswith("cuda"):
        return
    import torch

    mode = "tf32" if precision == "tf32" else "ieee"
    if hasattr(torch.backends.cudnn, "conv"):  # torch >= 2.9: the legacy flags may not be mixed with these
        torch.backends.cudnn.conv.fp32_precision = mode
        torch.backends.cuda.matmul.fp32_precision = mode
    else:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = mode == "tf32"


def inference(device: str, precision: str):
    """Inference mode, with bfloat16 autocast for ``bf16`` (on CUDA, or on a CPU when asked:
    the tests hold the bf16 path's agreement there)."""
    import torch

    stack = contextlib.ExitStack()
    stack.enter_context(torch.inference_mode())
    if precision == "bf16":
        stack.enter_context(torch.autocast("cuda" if str(device).startswith("cuda") else "cpu", dtype=torch.bfloat16))
    return stack


SHAPE_FLOOR, SHAPE_STEP = 64, 1024


def padded_rows(n: int) -> int:
    """Rows a batch of ``n`` goes through the network as on a GPU: the next power of two
    from ``SHAPE_FLOOR`` up to ``SHAPE_STEP``, then the next multiple of ``SHAPE_STEP``
    (a padded batch costs less than twice, and the shapes a run meets are few)."""
    if n <= SHAPE_STEP:
        return max(SHAPE_FLOOR, 1 << max(0, n - 1).bit_length())
    return -(-n // SHAPE_STEP) * SHAPE_STEP


def batch_shapes(batch_size: int) -> list[int]:
    """Every padded size a batch of at most ``batch_size`` rows can take, largest first."""
    top = padded_rows(batch_size)
    sizes = {top} | {padded_rows(n) for n in (SHAPE_FLOOR << k for k in range(5)) if n <= top}
    if top > SHAPE_STEP:
        sizes |= set(range(SHAPE_STEP, top + 1, SHAPE_STEP))
    return sorted(sizes, reverse=True)


def pad_rows(x):
    """``x`` (N, ...) with blank rows appended up to ``padded_rows(N)`` on an accelerator (in
    ``x``'s memory format); on a CPU ``x`` itself. Slice the network's output back to ``N``."""
    import torch

    n = len(x)
    if x.device.type == "cpu" or padded_rows(n) == n:
        return x
    fmt = torch.channels_last if x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last) \
        and not x.is_contiguous() else torch.contiguous_format
    out = x.new_zeros((padded_rows(n), *x.shape[1:])).contiguous(memory_format=fmt)
    out[:n] = x
    return out


# the host types a tile may cross in (anything else crosses as float32)
TRANSFER_TYPES = (np.uint8, np.int8, np.uint16, np.int16, np.float32)


class TileFeed:
    """Host tiles -> float32 tiles in [0, 1] on ``device``.

    ``tiles`` (N, C, H, W) are either already scaled floats (``gain`` None), or raw values in
    their own type with ``gain``/``offset`` (N, C) or (C,): then they cross to the device
    in that type and are scaled there. On CUDA the crossing goes through one pinned host
    buffer kept for the life of the feed (grown when a bigger batch comes), asynchronously;
    the buffer is reused only after the copy out of it has finished."""

    def __init__(self, device: str):
        self.device = device
        self.cuda = str(device).startswith("cuda")
        self._buf = None  # pinned uint8 storage, viewed as each batch's type
        self._done = None  # CUDA event: the last copy out of the buffer

    def _host(self, a: np.ndarray):
        """``a`` as a tensor the device can take: on CUDA a view of the pinned buffer holding
        a copy; on a CPU the array itself (copied only when it is read-only)."""
        import torch

        if not self.cuda:
            return torch.from_numpy(np.require(a, requirements=["W", "C"]))
        if self._buf is None or self._buf.numel() < a.nbytes:
            self._buf = torch.empty(max(a.nbytes, 1 << 20), dtype=torch.uint8, pin_memory=True)
            self._done = None
        if self._done is not None:
            self._done.synchronize()  # the last batch's copy has left the buffer
        host = self._buf[:a.nbytes].view(getattr(torch, a.dtype.name)).view(a.shape)
        np.copyto(host.numpy(), a, casting="no")
        return host

    def __call__(self, tiles, gain=None, offset=None):
        import torch

        if isinstance(tiles, torch.Tensor):
            x = tiles.to(self.device, torch.float32)
            return x if gain is None else self._scale(x, gain, offset, len(x))
        a = np.asarray(tiles)
        if a.dtype.type not in TRANSFER_TYPES:
            a = a.astype(np.float32)
        host = self._host(a)
        dev = host.to(self.device, non_blocking=self.cuda)
        if self.cuda:
            self._done = torch.cuda.Event()
            self._done.record()
        x = dev if dev.dtype == torch.float32 else dev.to(torch.float32)
        if gain is None:
            return x
        return self._scale(x, gain, offset, len(a))

    def _scale(self, x, gain, offset, n: int):
        """``clip(raw * gain + offset, 0, 1)`` per tile and band, in float32, as
        ``bands.Scaler`` computes it on the host (a multiply, then an add)."""
        import torch

        def per_band(v):  # (a copy: the batch's columns may be read-only views)
            t = torch.from_numpy(np.array(v, np.float32)).to(self.device, non_blocking=self.cuda)
            return (t.expand(n, -1) if t.ndim == 1 else t)[:, :, None, None]

        return (x * per_band(gain) + per_band(offset)).clamp_(0.0, 1.0)


@contextlib.contextmanager
def memory_guard(batch_size: int, flag: str = "--batch-size"):
    """A batch that does not fit in the device's memory as one line naming ``flag``, not a
    CUDA out-of-memory traceback."""
    import torch

    try:
        yield
    except torch.OutOfMemoryError as exc:
        from raylib.errors import InputError

        torch.cuda.empty_cache()
        first = str(exc).splitlines()[0] if str(exc) else "out of memory"
        raise InputError(f"{flag} {batch_size}: a batch of {batch_size} tiles does not fit in the GPU's memory "
                         f"({first[:160]}).", f"lower {flag} (e.g. {max(1, batch_size // 4)}).") from None


def emulate_tf32(module) -> None:
    """Make ``module`` compute as TF32 tensor cores do, on any device: the inputs and weights
    of every convolution and linear layer rounded to a 10-bit mantissa (to nearest, ties to
    even), products summed in float32. How a CPU measures what ``tf32`` does to a map
    (BENCHMARKS.md, "Precision"; tests/models/test_device.py)."""
    import torch

    def rnd(t):
        i = t.contiguous().view(torch.int32)
        return ((i + 0x0FFF + ((i >> 13) & 1)) & ~0x1FFF).view(torch.float32)

    for mod in module.modules():
        if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
            with torch.no_grad():
                mod.weight.copy_(rnd(mod.weight))
            mod.register_forward_pre_hook(lambda _, inp: (rnd(inp[0]), *inp[1:]))
