"""Bounded memory: the peak resident memory of the whole Ray session does not grow with
the area mapped (streamed reads, backpressure, parts written as they complete).
Figures are measured by ``scripts/benchmarks/map_throughput.py``; this test asserts the ratio only."""

from raylib.config import MapConfig
from raylib.io import storage
from raylib.io.profiling import PeakRSS
from raylib.pipelines.map.run import run_map

from ..conftest import SCENES

NAIP = [SCENES / "m_4709963_se_14_1_20150926.tif", SCENES / "m_4709963_se_14_1_20200831.tif"]


def test_peak_memory_of_8x_the_tiles_is_within_15_percent_of_1x(ray_session, bucket, test_model, tmp_path):
    for k in range(8):  # the same scenes under 8 prefixes
        for p in NAIP:
            storage.write_bytes(f"s3://data/memory/{k}/{p.name}", p.read_bytes())
    base = dict(model=test_model["uri"], tile_size=64, gsd="native", bands=[1, 2, 3], fill_value=0,
                quicklook=False)
    one = MapConfig(scenes=["s3://data/memory/0/"], **base, out=str(tmp_path / "warm"))
    run_map(one)  # warm-up: workers started, model cached
    with PeakRSS() as m1:
        s1 = run_map(one.model_copy(update={"out": str(tmp_path / "x1")}))
    with PeakRSS() as m8:
        s8 = run_map(one.model_copy(update={"scenes": ["s3://data/memory/"], "out": str(tmp_path / "x8")}))
    assert s1["tiles"] == 360 and s8["tiles"] == 8 * 360
    ratio = m8.peak / m1.peak
    for name, m in (("1x", m1), ("8x", m8)):
        print(name, {k: v >> 20 for k, v in sorted(m.at_peak.items(), key=lambda kv: -kv[1])})
    print(f"peak RSS 1x {m1.peak / 2**20:.0f} MiB, 8x {m8.peak / 2**20:.0f} MiB, ratio {ratio:.3f}")
    assert ratio < 1.15, (m1.peak, m8.peak)
