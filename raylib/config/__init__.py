"""One typed, validated config per job, from a YAML file and/or CLI flags.

Unknown keys and bad values are rejected with a message naming the field. ``base``: what
every config shares, the marks of a map's job identity, and the loading; the setting groups,
each declared once and taken by every verb that has them (their flags stay flat; ``--help``
shows each as a section): ``reading`` (how scenes are read), ``actors`` (model and scoring
actors), ``stac_search`` (``--stac``); ``mapping``, ``training``, ``change`` and ``export``:
the verbs' configs."""

from raylib.config.actors import ACTOR_FIELDS
from raylib.config.base import dump, flag_sections, identity_settings, job_role, load, validate
from raylib.config.change import AccountsConfig, ChangeConfig
from raylib.config.export import ExportConfig
from raylib.config.mapping import AssessConfig, ExportTilesConfig, MapConfig, RemapConfig, SampleConfig, SimilarConfig
from raylib.config.reading import READ_FIELDS, SceneRead
from raylib.config.training import (CompareConfig, EmbedConfig, EvaluateConfig, FinetuneConfig, TrainHeadConfig,
                                    TuneConfig)

__all__ = ["ACTOR_FIELDS", "AccountsConfig", "AssessConfig", "ChangeConfig", "CompareConfig", "EmbedConfig", "EvaluateConfig",
           "ExportConfig", "ExportTilesConfig", "FinetuneConfig", "MapConfig", "READ_FIELDS", "RemapConfig",
           "SampleConfig", "SceneRead", "SimilarConfig", "TrainHeadConfig", "TuneConfig", "dump", "flag_sections", "identity_settings", "job_role",
           "load", "validate"]
