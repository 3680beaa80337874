"""``landcover assess``: the way in (a sample, a map and a reference, a change map and two
references), then one output."""

from __future__ import annotations

import time

import numpy as np

from raylib.config import AssessConfig
from raylib.eval import reports
from raylib.pipelines.assess.common import check_out, write_outputs
from raylib.pipelines.assess.map_mode import assess_map
from raylib.pipelines.assess.report import assessment_markdown
from raylib.pipelines.assess.samples import assess_samples


def run_assess(cfg: AssessConfig, argv: list[str] | None = None) -> dict:
    t0 = time.time()
    check_out(cfg.out, cfg.overwrite)
    if cfg.samples is not None:
        result, pics, title = assess_samples(cfg)
    elif cfg.reference_before is not None:
        from raylib.pipelines.assess.change_mode import assess_change

        result, pics, title = assess_change(cfg)
    else:
        result, pics, title = assess_map(cfg)
    result.update(created_by=" ".join(argv or []), seconds=round(time.time() - t0, 2))
    pics["confusion.png"] = reports.confusion_png(np.asarray(result["confusion"]["counts"]), result["groups"],
                                                  "sample counts (rows: map, columns: reference), as in report.md",
                                                  rows_are="map")
    files = write_outputs(cfg.out, result, pics, assessment_markdown(title, result, sorted(pics)))
    result["files"] = files
    return result
