"""landcover change and accounts as Ray Data tasks, a partition of tile ids each: the same
change map and accounts as one partition in the driver's process, and a killed change
resumed with the partitions not done."""

import json
import os
import subprocess
import sys

from raylib.config import ChangeConfig
from raylib.pipelines.change.run import run_change

from ..conftest import REPO
from ..pipelines.test_change import AFTER, BEFORE, write_map


def _table(out):
    """The change map's rows (its parts only), by tile id."""
    import pyarrow.dataset as pads

    return pads.dataset(str(out), format="parquet", ignore_prefixes=["_", "."]).to_table().sort_by("tile_id")


def _dates(tmp_path):
    back = list(AFTER)
    back[1] = 0
    return [write_map(tmp_path / "d1", BEFORE, "2010-06-01"), write_map(tmp_path / "d2", AFTER, "2015-06-01"),
            write_map(tmp_path / "d3", back, "2020-06-01")]


def test_partitions_on_ray_give_the_one_partition_map(ray_session, tmp_path):
    maps = _dates(tmp_path)
    one = run_change(ChangeConfig(dates=maps, out=str(tmp_path / "one")))
    many = run_change(ChangeConfig(dates=maps, out=str(tmp_path / "many"), partition_tiles=3))
    assert one["partitions"] == 1 and many["partitions"] == 4 and many["parts"] >= 2
    a, b = _table(tmp_path / "one"), _table(tmp_path / "many")
    assert a.num_rows == b.num_rows == 12 and a.equals(b)
    for k in ("transitions", "counts", "changed_tiles", "changed_hectares", "flicker_share", "pending"):
        assert one[k] == many[k], k


def test_a_killed_change_resumes_with_the_partitions_not_done(ray_session, tmp_path):
    maps = _dates(tmp_path)
    out = str(tmp_path / "c")
    env = dict(os.environ, RAY_ADDRESS=ray_session.get_runtime_context().gcs_address,
               LANDCOVER_FAILPOINT="change_partition_done:2")
    r = subprocess.run([sys.executable, "-m", "raylib.cli", "change", "--dates", *maps, "--out", out,
                        "--partition-tiles", "3"], capture_output=True, text=True, env=env, timeout=300, cwd=REPO)
    assert r.returncode == -9, r.stderr[-2000:]
    assert not os.path.exists(os.path.join(out, "_SUCCESS"))
    s = run_change(ChangeConfig(dates=maps, out=out, partition_tiles=3))
    assert s["partitions_resumed"] >= 2 and s["partitions"] == 4
    whole = run_change(ChangeConfig(dates=maps, out=str(tmp_path / "whole")))
    assert _table(out).equals(_table(tmp_path / "whole"))
    assert json.loads(open(os.path.join(out, "_summary.json")).read())["transitions"] == whole["transitions"]


def test_accounts_on_ray_partitions_give_the_one_partition_figures(ray_session, tmp_path):
    from raylib.config import AccountsConfig
    from raylib.pipelines.accounts import run_accounts

    from ..pipelines.test_accounts import zones_file

    maps = _dates(tmp_path)
    run_change(ChangeConfig(dates=maps, out=str(tmp_path / "c")))
    z = zones_file(tmp_path / "z.gpkg")
    kw = dict(map=str(tmp_path / "c"), zones=z, zone_field="district")
    one = run_accounts(AccountsConfig(**kw, out=str(tmp_path / "one")))
    many = run_accounts(AccountsConfig(**kw, out=str(tmp_path / "many"), partition_tiles=3))
    assert one["partitions"] == 1 and many["partitions"] == 4
    assert (tmp_path / "one" / "accounts.csv").read_text() == (tmp_path / "many" / "accounts.csv").read_text()
    assert one["per_zone"] == many["per_zone"] and one["map_hectares"] == many["map_hectares"]


def test_killed_accounts_resume_with_the_partitions_not_done(ray_session, tmp_path):
    from raylib.config import AccountsConfig
    from raylib.pipelines.accounts import run_accounts

    from ..pipelines.test_accounts import zones_file

    maps = _dates(tmp_path)
    run_change(ChangeConfig(dates=maps, out=str(tmp_path / "c")))
    z = zones_file(tmp_path / "z.gpkg")
    args = ["--map", str(tmp_path / "c"), "--zones", z, "--zone-field", "district", "--partition-tiles", "3"]
    env = dict(os.environ, RAY_ADDRESS=ray_session.get_runtime_context().gcs_address,
               LANDCOVER_FAILPOINT="accounts_partition_done:2")
    out = tmp_path / "acc"
    r = subprocess.run([sys.executable, "-m", "raylib.cli", "accounts", *args, "--out", str(out)],
                       capture_output=True, text=True, env=env, timeout=300, cwd=REPO)
    assert r.returncode == -9, r.stderr[-2000:]
    assert len(list((out / "_tmp").glob("sums-*.json"))) >= 2 and not (out / "_SUCCESS").exists()
    s = run_accounts(AccountsConfig(map=str(tmp_path / "c"), zones=z, zone_field="district", partition_tiles=3,
                                    out=str(out)))
    whole = run_accounts(AccountsConfig(map=str(tmp_path / "c"), zones=z, zone_field="district",
                                        out=str(tmp_path / "whole")))
    assert s["per_zone"] == whole["per_zone"] and not (out / "_tmp").exists()
    assert (out / "accounts.csv").read_text() == (tmp_path / "whole" / "accounts.csv").read_text()
