"""Ray job entry point: ray job submit --working-dir . -- python jobs/export.py --config <yaml> (raylib installed on the cluster)."""
from raylib.cli import entry

entry("export")
