"""Ray job entry point: ray job submit --working-dir . -- python jobs/train_head.py --config <yaml> (raylib installed on the cluster)."""
from raylib.cli import entry

entry("train-head")
