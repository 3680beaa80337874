"""What the ways of assessing share: the map read, the output folder, the figures."""

from __future__ import annotations

import json

import numpy as np

from raylib.eval import accuracy
from raylib.formats import out_folder
from raylib.io import storage
from raylib.pipelines.common.map_input import read_map_input


def read_map(uri: str):
    """The whole finished map (or composite, or change map) at ``uri``."""
    return read_map_input(uri).table


def check_out(out: str, overwrite: bool) -> None:
    out_folder.check(out, "assessment", overwrite)


def write_outputs(out: str, result: dict, pictures: dict[str, bytes], report: str) -> dict:
    out_folder.unfinish(out)
    files = {}
    for name, data in pictures.items():
        files[name] = storage.join(out, name)
        storage.write_bytes(files[name], data)
    files["report.md"] = storage.join(out, "report.md")
    storage.write_bytes(files["report.md"], report.encode())
    files["assessment.json"] = storage.join(out, "assessment.json")
    storage.write_bytes(files["assessment.json"], json.dumps(result, indent=2).encode())
    out_folder.finish(out)
    return files


def figures(est: dict, counts: np.ndarray, groups: list[str], unit: str) -> dict:
    """The flat figures users look for first, beside the full estimates."""
    sm = accuracy.sample_metrics(counts)
    recall = dict(zip(groups, sm["recall"]))
    producers = [est["producers_accuracy"][g]["estimate"] for g in groups
                 if recall[g] is not None and est["producers_accuracy"][g] is not None]
    return {
        "overall_accuracy": est["overall_accuracy"]["estimate"],
        "overall_accuracy_ci95": est["overall_accuracy"]["ci95"],
        "balanced_accuracy": sm["balanced_accuracy"],
        "recall_sample_counts": recall,
        "balanced_accuracy_area_weighted": float(np.mean(producers)) if producers else None,
        "kappa": sm["kappa"],
        "sample_accuracy": sm["accuracy"],
        "users_accuracy": est["users_accuracy"],
        "producers_accuracy": est["producers_accuracy"],
        "area": est["area"],
        "area_unit": unit,
        "groups": groups,
        "confusion": {"rows": "map", "columns": "reference", "classes": groups,
                      "counts": est["confusion_counts"],
                      "area_proportions": est["confusion_area_proportions"],
                      "area_proportions_ci95": est["confusion_area_proportions_ci95"]},
        "estimates": est,
    }
