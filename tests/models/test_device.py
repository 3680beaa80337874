"""The model's device side (``models.device``): tiles cross in their own type and are
scaled where the model runs, bit for bit as on the host; each precision path's agreement
with fp32 on real tiles (why fp32 is the default: one answer on every device)."""

import json

import numpy as np
import pytest
import torch

from raylib.errors import InputError
from raylib.models import device
from raylib.raster import bands as bandlib

from ..conftest import LANDSAT


def test_raw_tiles_scaled_on_the_device_equal_the_hosts_scaling_bit_for_bit():
    rng = np.random.default_rng(0)
    for dtype, top in ((np.uint8, 255), (np.uint16, 20000), (np.int16, 12000), (np.float32, 1.3)):
        raw = (rng.random((5, 3, 8, 8)) * top).astype(dtype)
        gain = rng.random((5, 3)).astype(np.float32) * (1.5 / top)
        offset = (rng.random((5, 3)).astype(np.float32) - 0.5) * 0.1
        x = device.TileFeed("cpu")(raw, gain, offset)
        assert x.dtype == torch.float32 and x.device.type == "cpu"
        assert np.array_equal(x.numpy(), bandlib.scaled(raw, gain, offset))
        scaler = bandlib.Scaler(gain[0], offset[0], None, np.zeros(3, np.float32))
        assert np.array_equal(device.TileFeed("cpu")(raw, gain[0], offset[0]).numpy(), scaler.scale(raw))
    raw.setflags(write=False)  # a Ray Data batch is a read-only view: taken as it is
    assert np.array_equal(device.TileFeed("cpu")(raw).numpy(), raw)


def test_a_scene_whose_type_does_not_fit_the_jobs_is_scaled_and_quantised():
    raw = np.array([[[[0, 1000], [40000, 65535]]]], np.uint16)
    scaler = bandlib.Scaler(np.array([1 / 50000], np.float32), np.zeros(1, np.float32), None, np.zeros(1, np.float32))
    same, g, o = scaler.transfer(raw, "uint16")
    assert same.dtype == np.uint16 and np.array_equal(same, raw) and g[0] == np.float32(1 / 50000)
    wider, _, _ = scaler.transfer(raw.astype(np.uint8), "uint16")  # a uint8 scene in a uint16 job: exact
    assert wider.dtype == np.uint16
    q, g, o = scaler.transfer(raw, "uint8")  # a uint16 scene in a uint8 job: scaled, then 8 bits
    assert q.dtype == np.uint8 and np.abs(bandlib.scaled(q, g[None], o[None]) - scaler.scale(raw)).max() <= 0.5 / 255
    assert bandlib.transfer_type("uint16") == "uint16" and bandlib.transfer_type("int32") == "float32"


def test_precision_flags_and_placement():
    conv, matmul = torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision
    try:
        device.set_precision("cuda", "fp32")  # IEEE float32: PyTorch leaves TF32 on for cuDNN convolutions
        assert (torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision) == ("ieee",) * 2
        device.set_precision("cuda", "tf32")
        assert (torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision) == ("tf32",) * 2
    finally:
        torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision = conv, matmul
    assert device.placed("cpu", "bf16") == ("cpu", "fp32")  # a CPU runs fp32 whatever a GPU job asked
    with pytest.raises(ValueError, match="precision must be one of"):
        device.set_precision("cuda", "fp16")


def test_a_batch_too_big_for_the_gpu_is_one_line_naming_the_flag():
    with pytest.raises(InputError) as err:
        with device.memory_guard(65536):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB\nmore detail")
    assert str(err.value).startswith("--batch-size 65536: a batch of 65536 tiles does not fit in the GPU's memory")
    assert "\n" not in str(err.value) and "lower --batch-size (e.g. 16384)" in str(err.value)


def test_each_precision_paths_agreement_with_fp32_on_real_tiles(test_model):
    """1,000 tiles of the README scene, read as the map reads them (uint16 with their
    scaling): the device path at fp32 gives the host path's probabilities exactly; TF32
    (emulated) and bf16 (CPU autocast) change labels and move probabilities by more than the
    0.02 one answer allows, bf16 by far (the GPU map's 22 % of tiles: issue 28)."""
    from raylib.config import MapConfig
    from raylib.models.landcover_model import LandcoverModel
    from raylib.pipelines.common.planning import plan_scene, resolve_grid
    from raylib.pipelines.map.source import read_units, scene_meta
    from raylib.raster.reading import scaled_pixels

    uri = test_model["uri"]
    cfg = MapConfig(scenes=[str(LANDSAT)], out="unused", bands="landsat8-b234", fill_value=0, model=uri)
    man = test_model["manifest"]
    grid = resolve_grid(cfg, man)
    plan = plan_scene(str(LANDSAT), cfg, man, grid)
    assert plan.pixel_type == "uint16"
    unit = {"scene_idx": [np.zeros(1, np.int64)], "lo": [np.array([3000])], "hi": [np.array([4000])],
            "spec": [np.array([plan.read_spec(grid.tile_size, 0.9, 1.0, plan.pixel_type)], object)],
            "meta": [np.array([json.dumps({**scene_meta(plan), "index": 0})], object)]}
    b = read_units(unit, grid=grid, channels=3, read_timeout=60, read_retries=1, pixel_type=plan.pixel_type)
    ok = b["status"] == "ok"
    raw, gain, offset = b["pixels"][ok], b["gain"][ok], b["offset"][ok]
    assert raw.dtype == np.uint16 and len(raw) == 990  # (10 of them in the grid's last column, mostly outside)
    fp32 = LandcoverModel.load(uri, device="cpu")
    p32 = fp32.predict(raw, gain=gain, offset=offset)[0]
    assert np.array_equal(p32, fp32.predict(scaled_pixels({"pixels": raw, "gain": gain, "offset": offset}))[0])

    def agreement(p):
        return float((p.argmax(1) == p32.argmax(1)).mean()), float(np.abs(p - p32).max())

    bf16 = LandcoverModel.load(uri, device="cpu", precision="bf16").predict(raw, gain=gain, offset=offset)[0]
    device.emulate_tf32(fp32.backbone.model)
    tf32 = fp32.predict(raw, gain=gain, offset=offset)[0]
    (a_tf, d_tf), (a_bf, d_bf) = agreement(tf32), agreement(bf16)
    assert 0.98 <= a_tf < 1.0 and d_tf > 0.02, (a_tf, d_tf)  # measured: 0.994, 0.058
    assert 0.75 <= a_bf < 0.97 and d_bf > 0.2, (a_bf, d_bf)  # measured: 0.893, 0.52


def test_a_gpu_sees_few_batch_shapes_and_a_rows_result_does_not_depend_on_its_padding(test_model):
    """cuDNN plans each new input shape (about a second each on the GPU node), and a map's
    batches come in every size: off the CPU a batch is padded to a few sizes, all of which a
    model actor plans at its start; the padding does not change any real row's result."""
    sizes = [device.padded_rows(n) for n in (1, 53, 64, 65, 149, 730, 1000, 1024, 1025, 3000)]
    assert sizes == [64, 64, 64, 128, 256, 1024, 1024, 1024, 2048, 3072]
    assert device.batch_shapes(1024) == [1024, 512, 256, 128, 64]
    assert device.batch_shapes(3000) == [3072, 2048, 1024, 512, 256, 128, 64]
    assert device.batch_shapes(40) == [64]
    # every size a batch of up to 1,024 rows meets is one of the shapes planned at the start
    assert {device.padded_rows(n) for n in range(1, 1025)} == set(device.batch_shapes(1024))
    cpu = torch.zeros(53, 3, 8, 8)
    assert device.pad_rows(cpu) is cpu  # a CPU plans nothing: no padding
    meta = torch.empty(53, 3, 8, 8, device="meta").contiguous(memory_format=torch.channels_last)
    padded = device.pad_rows(meta)
    assert padded.shape == (64, 3, 8, 8) and padded.is_contiguous(memory_format=torch.channels_last)
    # a row's embedding with blank rows beside it equals its embedding alone (the network
    # of the built-in model, on real tiles)
    from raylib.models.landcover_model import LandcoverModel

    m = LandcoverModel.load(test_model["uri"], device="cpu")
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((5, 3, 64, 64), dtype=np.float32))
    bb = m.backbone
    with torch.inference_mode():
        alone = bb._pool(bb.model(pixel_values=bb.preprocessor.tiles(x, bb.input_size))).float()
        beside = torch.cat([x, torch.zeros(59, 3, 64, 64)])
        padded = bb._pool(bb.model(pixel_values=bb.preprocessor.tiles(beside, bb.input_size))).float()[:5]
    np.testing.assert_allclose(padded.numpy(), alone.numpy(), rtol=0, atol=2e-5)
