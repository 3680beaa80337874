"""What every job's config shares: the base model (unknown keys refused, renamed keys taken
with a deprecation line), the marks of a map's job identity, and loading (YAML file and/or CLI
flags) with errors naming the field."""

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
    # a setting group (a base class declaring fields several verbs take) names its help section
    section: ClassVar[str | None] = None

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

# A map's job identity (``pipelines.common.planning.job_fingerprint``: a rerun resumes the parts
# of the same job) holds every setting of its config but those marked here, so a new setting is
# part of it until its field says why not (tests/pipelines/test_job_identity.py holds each to it):
RUN = {"job": "run"}  # how the job runs, not what it writes (the rows are alike: the test maps with them changed)
SCENES = {"job": "scenes"}  # which scenes are mapped: in the identity through the scene list it gives
GRID = {"job": "grid"}  # the tile grid: through the grid it resolves to
MODEL = {"job": "model"}  # through the model's id


def job_role(field) -> str:
    """What a config field is to a map's job identity: ``settings`` (in it as it is), or
    ``run``, ``scenes``, ``grid``, ``model`` (its mark above)."""
    extra = field.json_schema_extra
    return extra.get("job", "settings") if isinstance(extra, dict) else "settings"


def identity_settings(cls: type[BaseModel]) -> list[str]:
    """The fields of ``cls`` that are a job's settings as they are (unmarked)."""
    return [k for k, f in cls.model_fields.items() if job_role(f) == "settings"]


RayAddress = Annotated[Union[str, None], Field(description=RAY_ADDRESS_HELP, json_schema_extra=RUN)]
Split = Annotated[Literal["test", "train", "all"], Field(description="rows of an embeddings table to use")]


def flag_sections(cls: type[_Config]) -> list[tuple[str | None, list[str]]]:
    """The fields of ``cls`` as ``--help`` lists them: the verb's own first (section None:
    those its class declares, then those of an unsectioned base), then each setting group it
    takes, under the group's ``section``."""
    groups = [k for k in cls.__mro__[1:] if isinstance(k.__dict__.get("section"), str)]
    home = {}
    for g in reversed(groups):  # (a group's fields are its own: groups take no other group)
        home.update({f: g.section for f in g.model_fields if f in cls.model_fields})
    inherited = {f for k in cls.__mro__[1:] if isinstance(k, type) and issubclass(k, BaseModel) for f in k.model_fields}
    first = [f for f in cls.model_fields if f not in home and f not in inherited]  # (declared by the verb's class)
    first += [f for f in cls.model_fields if f not in home and f not in first]
    return [(None, first)] + [(g.section, [f for f in cls.model_fields if home.get(f) == g.section]) for g in groups]


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
