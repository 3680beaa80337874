"""cluster.yaml passes Ray's own cluster-config validation, and every stage of every example
job config asks for resources that some worker node type can give."""

import glob
from pathlib import Path

import pytest
import yaml

from raylib import config as cfglib

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cluster():
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((REPO / "cluster.yaml").read_text())
    prepared = prepare_config(raw)
    validate_config(prepared)  # Ray's JSON schema + its own consistency checks
    return prepared


def test_cluster_yaml_is_valid_for_ray(cluster):
    import ray

    types = cluster["available_node_types"]
    assert types[cluster["head_node_type"]]["resources"] == {"CPU": 0}  # the head runs no tasks
    assert {"cpu_spot", "gpu"} <= set(types)
    assert types["gpu"]["resources"]["GPU"] >= 1 and types["gpu"]["min_workers"] == 0
    assert types["cpu_spot"]["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
    image = cluster["docker"]["image"]
    assert "ray-ml" not in image and image.startswith(f"rayproject/ray:{ray.__version__}-py311")


def stage_requests(path: str) -> list[tuple[str, dict]]:
    raw = yaml.safe_load(Path(path).read_text())
    name = Path(path).name
    if name.startswith("map"):
        c = cfglib.validate(cfglib.MapConfig, raw)
    elif name.startswith("embed"):
        c = cfglib.validate(cfglib.EmbedConfig, raw)
    elif name.startswith("tune"):
        c = cfglib.validate(cfglib.TuneConfig, raw)
        return [("trial", {"CPU": c.cpus_per_trial})]
    elif name.startswith("finetune"):
        c = cfglib.validate(cfglib.FinetuneConfig, raw)
        return [("decode task", {"CPU": c.read_cpus}),
                ("train worker", {"CPU": c.cpus_per_worker, "GPU": 1 if c.gpu else 0})]
    elif name.startswith(("evaluate", "compare")):
        cls = cfglib.EvaluateConfig if name.startswith("evaluate") else cfglib.CompareConfig
        cfglib.validate(cls, raw)
        # fine-tuned models: decode tasks and one scoring actor (evaluation.score_labelled)
        return [("decode task", {"CPU": 0.5}), ("scoring actor", {"CPU": 1.0})]
    elif name.startswith("assess"):
        cfglib.validate(cfglib.AssessConfig, raw)
        return [("driver", {"CPU": 1.0})]  # assess runs in the job's driver: no Ray tasks
    else:
        raise AssertionError(f"no resource model for {name}")
    return [("read task", {"CPU": c.read_cpus}), ("model actor", {"CPU": c.actor_cpus, "GPU": c.num_gpus})]


@pytest.mark.parametrize("path", sorted(glob.glob(str(REPO / "configs" / "*.yaml"))), ids=lambda p: Path(p).name)
def test_every_stage_fits_a_worker_type(cluster, path):
    workers = {k: v["resources"] for k, v in cluster["available_node_types"].items()
               if k != cluster["head_node_type"]}
    for stage, req in stage_requests(path):
        fits = [k for k, res in workers.items() if all(res.get(r, 0) >= v for r, v in req.items() if v)]
        assert fits, f"{Path(path).name}: the {stage} asks for {req}, which no node type in cluster.yaml offers"


def test_validation_catches_a_typo():
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((REPO / "cluster.yaml").read_text())
    raw["available_node_types"]["gpu"]["min_wokers"] = 1
    with pytest.raises(jsonschema.ValidationError, match="min_wokers"):
        validate_config(prepare_config(raw))


def test_schedule_recipes_submit_a_valid_incremental_map_job():
    """The KubeRay RayJob and the crontab line run jobs/map.py with a config that validates."""
    import shlex

    job = yaml.safe_load((REPO / "deploy" / "kuberay-rayjob-map.yaml").read_text())
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    spec = job["spec"]
    import ray

    assert spec["rayClusterSpec"]["rayVersion"] == ray.__version__
    assert spec["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    args = shlex.split(spec["entrypoint"])
    config = args[args.index("--config") + 1].replace("/landcover-ray/", "")
    assert args[1].endswith("jobs/map.py") and (REPO / config).exists()
    cfg = cfglib.validate(cfglib.MapConfig, yaml.safe_load((REPO / config).read_text()))
    assert cfg.incremental
    cron = [ln for ln in (REPO / "deploy" / "crontab.example").read_text().splitlines()
            if ln and not ln.startswith("#")]
    assert len(cron) == 1 and "--no-wait" in cron[0] and "--submission-id" in cron[0] and config in cron[0]
