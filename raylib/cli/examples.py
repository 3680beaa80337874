"""Each verb's examples, printed at the end of ``landcover <verb> --help`` (and in
docs/cli.md). Paths are those of the README's walk-throughs, run from a fresh clone with the
shared data beside it; the tests parse every example as the CLI would."""

from __future__ import annotations

NC = "../shared/data/labelled-scenes/nc-wake-landsat7-landclass96"
LANDSAT = "../shared/data/scenes/LC08_L1TP_224078_20200518_20200518_01_RT.TIF"
CROSSWALK = "configs/crosswalks/eurosat-to-nc-landclass96.yaml"

EXAMPLES: dict[str, list[tuple[str, str]]] = {
    "map": [
        ("the README's scene, with the built-in model",
         f"landcover map --scenes {LANDSAT} --bands landsat8-b234 --fill-value 0 --out maps/landsat"),
        ("with an embedding store beside the map (for train-head, remap, similar)",
         f"landcover map --scenes {NC}/image_landsat7_2000.tif --bands 3,2,1 --sensor landsat-etm-l1 "
         "--store --out maps/nc"),
        ("every scene under a prefix, on GPU actors",
         "landcover map --scenes s3://my-bucket/scenes/ --num-gpus 1 --out s3://my-bucket/maps/area"),
        ("a summer of Sentinel-2 from a STAC API, its best observation per ground tile",
         "landcover map --stac https://earth-search.aws.element84.com/v1 --collections sentinel-2-l2a "
         "--bbox=-78.9,35.7,-78.5,36.0 --datetime 2020-05-01/2020-09-30 --composite best --out maps/wake-2020"),
    ],
    "embed": [
        ("a labelled image folder -> an embeddings table (for tune, evaluate)",
         "landcover embed --data ../shared/data/eurosat-rgb --out emb/eurosat"),
        ("scenes tile by tile -> an embedding store (for remap, train-head, similar)",
         f"landcover embed --scenes {NC}/image_landsat7_2000.tif --bands 3,2,1 --sensor landsat-etm-l1 "
         "--out store/nc"),
    ],
    "tune": [
        ("every head family on an embeddings table",
         "landcover tune --data emb/eurosat --trials 20 --out tune/eurosat"),
        ("on a few labelled tiles of a store",
         f"landcover tune --store maps/nc --labels {NC}/label_landclass96.tif --crosswalk {CROSSWALK} "
         "--per-class 20 --out tune/nc"),
    ],
    "evaluate": [
        ("a model on the stored test split of an embeddings table",
         "landcover evaluate --model tune/eurosat/model --data emb/eurosat --out reports/eurosat"),
    ],
    "finetune": [
        ("the backbone end to end on an image folder, 2 Ray Train workers",
         "landcover finetune --data ../shared/data/eurosat-rgb --epochs 15 --workers 2 --out models/eurosat-ft"),
    ],
    "compare": [
        ("a frozen head and a fine-tuned network on the same rows",
         "landcover compare --models tune/eurosat/model models/eurosat-ft --data emb/eurosat "
         "--out reports/frozen-vs-ft"),
    ],
    "train-head": [
        ("a head on an image folder", "landcover train-head --data ../shared/data/eurosat-rgb --out models/eurosat-lr"),
        ("a head on 20 labelled tiles per class of a map's store",
         f"landcover train-head --store maps/nc --labels {NC}/label_landclass96.tif --crosswalk {CROSSWALK} "
         "--per-class 20 --out models/nc-20"),
    ],
    "assess": [
        ("a map against a reference raster, leaving out the head's training tiles",
         f"landcover assess --map maps/nc-20 --reference {NC}/label_landclass96.tif --crosswalk {CROSSWALK} "
         "--exclude-training models/nc-20 --out reports/nc-20"),
        ("a labelled sample (landcover sample, its reference column filled in)",
         "landcover assess --samples labelled.parquet --areas sample.areas.csv --out reports/sample"),
    ],
    "export-tiles": [
        ("the labelled tiles of a store as an image folder for finetune",
         f"landcover export-tiles --store maps/nc --labels {NC}/label_landclass96.tif --crosswalk {CROSSWALK} "
         "--per-class 20 --out tiles/nc-20"),
    ],
    "remap": [
        ("a map's store with a new head: no imagery, no backbone",
         "landcover remap --store maps/nc --model models/nc-20 --out maps/nc-20"),
    ],
    "similar": [
        ("the 50 tiles most like two examples",
         "landcover similar --store maps/nc --positives <tile_id> <tile_id> --k 50 --out found.parquet"),
    ],
    "sample": [
        ("500 units over the map's classes, to label for assess --samples",
         "landcover sample --map maps/nc --n 500 --out sample.parquet"),
    ],
    "change": [
        ("three dates of one place, mapped on the ground grid (landcover map --grid ground)",
         "landcover change --dates maps/2010 maps/2015 maps/2020 --out change/2010-2015-2020"),
        ("two dates", "landcover change --before maps/2010 --after maps/2020 --out change/2010-2020"),
    ],
    "accounts": [
        ("the area of each class per zone",
         "landcover accounts --map maps/2020 --zones docs/examples/naip-zones.geojson --zone-field name "
         "--out accounts/2020"),
    ],
    "export": [
        ("a map as cloud-optimised GeoTIFFs with a STAC Collection",
         "landcover export --map maps/landsat --out exports/landsat"),
        ("a change map's transitions", "landcover export --map change/2010-2015-2020 --out exports/change"),
    ],
}


def epilog(verb: str) -> str:
    """The examples block of ``landcover <verb> --help``."""
    lines = ["examples:"]
    for what, cmd in EXAMPLES.get(verb, []):
        lines += [f"  # {what}", f"  {cmd}"]
    return "\n".join(lines)
