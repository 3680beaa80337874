"""The setting groups of the actors that run a network, declared once: ``ModelActors`` (a pool
of model actors fed by read tasks: ``map``, ``embed``) and ``ScoringActor`` (the one actor that
scores a labelled split: ``evaluate``, ``compare``), with the GPU rules both are held to."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Union

from pydantic import Field, model_validator

from raylib.config.base import RUN, _Config

Precision = Literal["fp32", "tf32", "bf16"]
GpuPrecision = Annotated[Precision, Field(
    description="the network's arithmetic on GPU actors: fp32 (default: the CPU's answers), tf32 or bf16 (faster, "
                "a different map: BENCHMARKS.md)")]


def check_gpus(num_gpus: float | None, precision: str) -> None:
    """GPU settings a job cannot run with, refused at the edge."""
    if num_gpus is not None and num_gpus > 1 and not float(num_gpus).is_integer():
        raise ValueError(f"num_gpus {num_gpus:g}: more than one GPU per actor must be a whole number (Ray's rule)")
    if precision != "fp32" and num_gpus == 0:
        raise ValueError(f"precision {precision} is for GPU actors, and num_gpus is 0 (on a CPU the network "
                         "runs fp32): give num_gpus, or leave precision out")


class ModelActors(_Config):
    """A pool of model actors fed by read tasks: how many, what each holds, how it batches."""

    section: ClassVar[str] = "model actors and read tasks (GPU or CPU)"

    batch_size: int | None = Field(None, gt=0, le=65536, json_schema_extra=RUN,
                                   description="tiles per model batch (default: 1024 on GPU actors, 64 on CPU)")
    precision: GpuPrecision = "fp32"
    actors: int | None = Field(None, gt=0, json_schema_extra=RUN,
                               description="model actors (default: 1 per GPU, or 1 on CPU)")
    actor_cpus: float = Field(1.0, gt=0, json_schema_extra=RUN, description="CPUs reserved per model actor")
    read_cpus: float = Field(0.5, gt=0, json_schema_extra=RUN, description="CPUs reserved per read task")
    num_gpus: float = Field(0.0, ge=0, json_schema_extra=RUN,
                            description="GPUs per model actor (0: CPU; 0.5: two actors share a GPU)")
    torch_threads: int | None = Field(None, gt=0, json_schema_extra=RUN,
                                      description="torch threads per actor (default: node cores / actors, at most 8)")

    @model_validator(mode="after")
    def _actor_gpus(self):
        check_gpus(self.num_gpus, self.precision)
        return self


ScoringGpus = Annotated[Union[float, None], Field(
    ge=0, le=1, description="GPUs of the scoring actor (default: 1 when the cluster has a GPU, else 0)")]


class ScoringActor(_Config):
    """The actor that scores models on a labelled split."""

    section: ClassVar[str] = "scoring actor"

    num_gpus: ScoringGpus = None
    precision: GpuPrecision = "fp32"

    @model_validator(mode="after")
    def _scoring_gpus(self):
        check_gpus(self.num_gpus, self.precision)
        return self


ACTOR_FIELDS = tuple(ModelActors.model_fields)
