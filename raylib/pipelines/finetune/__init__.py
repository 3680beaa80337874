"""Fine-tuning a backbone end to end with Ray Train: ``recipe`` (pure settings math),
``loop`` (one worker's training loop, as named steps testable without Ray), ``run`` (the
driver: data, trainer, checkpoints, model directory)."""

from raylib.pipelines.finetune.recipe import band_plan, class_weights, fingerprint, one_cycle
from raylib.pipelines.finetune.run import run_finetune, run_location

__all__ = ["band_plan", "class_weights", "fingerprint", "one_cycle", "run_finetune", "run_location"]
