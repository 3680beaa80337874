"""The map job's input as a Ray Data datasource (``SceneDatasource``): its read tasks plan
and read their own scenes (``map.source``). A module of its own because ``ray.data`` takes
a second to import: the driver imports it when the pipeline starts, after Ray's start has
begun in a thread."""

from __future__ import annotations

import functools

from ray.data.datasource import Datasource

from raylib.pipelines.common.object_store import shared
from raylib.pipelines.map import source


class SceneDatasource(Datasource):
    """The map job's input as a Ray Data datasource: one read task per block of scene
    numbers (``source.first_blocks``) plans its scenes and reads their tiles (``plan_and_read``).

    Making the dataset runs nothing: the read tasks hold their scene numbers and one object
    reference to the job's settings (``args_ref``: the keyword arguments of
    ``plan_and_read``, put once by the driver). (``ray.data.from_arrow`` ran a Ray task per
    block for its metadata before the job started: 1.6 s for 17 blocks in a warm session,
    hundreds of tasks at 5,000 scenes.)"""

    def __init__(self, n: int, per: int, head: int, args_ref, on_driver: bool = False, ramp: int = 0,
                 spread: dict | None = None):
        self.blocks = source.first_blocks(n, per, head, on_driver, ramp, spread)
        self.args_ref = args_ref

    def estimate_inmemory_data_size(self) -> None:
        return None

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None, data_context=None) -> list:
        from ray.data.block import BlockMetadata
        from ray.data.datasource import ReadTask

        meta = BlockMetadata(num_rows=None, size_bytes=None, input_files=None, exec_stats=None)
        return [ReadTask(functools.partial(read_scenes, block, self.args_ref), meta) for block in self.blocks]


def read_scenes(block: dict, args_ref):
    """One read task of ``SceneDatasource``: ``plan_and_read`` on its scene numbers, as
    Ray Data blocks."""
    from ray.data.block import BlockAccessor

    for out in source.plan_and_read(block, **shared(args_ref)):
        yield BlockAccessor.batch_to_block(out)
