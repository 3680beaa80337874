"""One typed, validated config per job, from a YAML file and/or CLI flags.

Unknown keys and bad values are rejected with a message naming the field. ``base``: what
every config shares and the loading; ``reading``: the scene-read settings, declared once;
``mapping``, ``training``, ``change`` and ``export``: the verbs' configs."""

from raylib.config.base import dump, load, validate
from raylib.config.change import AccountsConfig, ChangeConfig
from raylib.config.export import ExportConfig
from raylib.config.mapping import (AssessConfig, ExportTilesConfig, MapConfig, RemapConfig, SampleConfig,
                                   SimilarConfig)
from raylib.config.reading import READ_FIELDS, SceneRead
from raylib.config.training import (CompareConfig, EmbedConfig, EvaluateConfig, FinetuneConfig, TrainHeadConfig,
                                    TuneConfig)

__all__ = ["AccountsConfig", "AssessConfig", "ChangeConfig", "CompareConfig", "EmbedConfig", "EvaluateConfig",
           "ExportConfig", "ExportTilesConfig", "FinetuneConfig", "MapConfig", "READ_FIELDS", "RemapConfig",
           "SampleConfig", "SceneRead", "SimilarConfig", "TrainHeadConfig", "TuneConfig", "dump", "load", "validate"]
