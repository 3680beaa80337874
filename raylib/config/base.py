"""What every job's config shares: the base model (unknown keys refused), the GPU settings'
checks, and loading (YAML file and/or CLI flags) with errors naming the field."""

from __future__ import annotations

import difflib
import logging
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from raylib.errors import ConfigError
from raylib.io import storage


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    # old field name -> its new name: still taken (a flag, a YAML key, a keyword), with one
    # deprecation line (the CLI keeps the old flag, hidden from --help)
    renamed: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _renamed_fields(cls, values):
        if not cls.renamed or not isinstance(values, dict):
            return values
        values = dict(values)
        for old, new in cls.renamed.items():
            if old in values:
                value = values.pop(old)
                flag, to = "--" + old.replace("_", "-"), "--" + new.replace("_", "-")
                logging.getLogger("raylib.config").warning(
                    "%s (%s) is deprecated: it is %s (%s) now, and the old name will go in a later release",
                    flag, old, to, new)
                values.setdefault(new, value)
        return values


RAY_ADDRESS_HELP = "the Ray cluster to run on (default: RAY_ADDRESS, else a local Ray started for the run)"
RayAddress = Annotated[Union[str, None], Field(description=RAY_ADDRESS_HELP)]
Precision = Literal["fp32", "tf32", "bf16"]
PRECISION_HELP = ("the network's arithmetic on GPU actors: fp32 (default: the CPU's answers), tf32 or bf16 (faster, "
                  "a different map: BENCHMARKS.md)")
SCORING_GPUS_HELP = "GPUs of the scoring actor (default: 1 when the cluster has a GPU, else 0)"
# fields several verbs declare alike (each with its own default)
GpuPrecision = Annotated[Precision, Field(description=PRECISION_HELP)]
ScoringGpus = Annotated[Union[float, None], Field(ge=0, le=1, description=SCORING_GPUS_HELP)]
Split = Annotated[Literal["test", "train", "all"], Field(description="rows of an embeddings table to use")]


def _check_gpu_fields(cfg):
    """GPU settings a job cannot run with, refused at the edge."""
    gpus = cfg.num_gpus
    if gpus is not None and gpus > 1 and not float(gpus).is_integer():
        raise ValueError(f"num_gpus {gpus:g}: more than one GPU per actor must be a whole number (Ray's rule)")
    if cfg.precision != "fp32" and gpus == 0:
        raise ValueError(f"precision {cfg.precision} is for GPU actors, and num_gpus is 0 (on a CPU the network "
                         "runs fp32): give num_gpus, or leave precision out")
    return cfg


class _ScoringConfig(_Config):
    """A verb that scores models on a labelled split on a scoring actor (``evaluate``,
    ``compare``): its GPU settings are checked as a map's."""

    @model_validator(mode="after")
    def _gpus(self):
        return _check_gpu_fields(self)


def _describe(cls: type[_Config]) -> str:
    return ", ".join(cls.model_fields)


def validate(cls: type[_Config], values: dict[str, Any], source: str = "config", verb: str = "<verb>") -> _Config:
    """Validate ``values`` into ``cls``; raise ``ConfigError`` naming every bad field (as a
    YAML key and as a flag) and the fix."""
    try:
        return cls(**values)
    except ValidationError as exc:
        problems, unknown, rules = [], False, 0
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "?"
            flag = "--" + str(err["loc"][0]).replace("_", "-") if err["loc"] else ""
            if err["type"] == "extra_forbidden":
                close = difflib.get_close_matches(str(err["loc"][0]), list(cls.model_fields), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                problems.append(f"unknown field '{field}'{hint}")
                unknown = True
            elif err["type"] == "missing":
                problems.append(f"field '{field}' ({flag}) is required")
            elif not err["loc"]:  # a rule across fields (model validator): its message holds its fix
                problems.append(str(err["msg"]).removeprefix("Value error, "))
                rules += 1
            else:
                msg = str(err["msg"]).removeprefix("Value error, ")
                problems.append(f"field '{field}' ({flag}): {msg[:1].lower() + msg[1:]} (got {err.get('input')!r})")
        if unknown:
            fix = f"valid fields are: {_describe(cls)}."
        elif rules == len(problems):  # (the rule's message says what to give)
            fix = f"landcover {verb} --help says what each flag takes."
        else:
            fix = f"correct the value(s) named above (what each takes: landcover {verb} --help, or docs/cli.md)."
        what = f"Invalid {source}: " if source != "flags" else ""
        raise ConfigError(what + "; ".join(problems) + ".", fix) from None


def load(cls: type[_Config], path: str | None = None, overrides: dict[str, Any] | None = None,
         verb: str = "<verb>") -> _Config:
    """Read a YAML config (optional), apply CLI overrides, validate."""
    import yaml

    values: dict[str, Any] = {}
    source = "flags" if overrides and not path else "config"
    if path:

        source = f"config {path}"
        try:
            text = storage.read_bytes(path).decode()
        except Exception as exc:
            raise ConfigError(f"Cannot read config file {path}: {exc}", "check the path.") from None
        try:
            loaded = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"Config file {path} is not valid YAML: {exc}", "fix the YAML syntax.") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"Config file {path} must be a mapping of field: value.", f"fields: {_describe(cls)}.")
        values.update(loaded)
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return validate(cls, values, source, verb)


def dump(cfg: _Config, path: str | Path) -> None:
    import yaml

    Path(path).write_text(yaml.safe_dump(cfg.model_dump(), sort_keys=False))
