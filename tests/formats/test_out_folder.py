"""formats.out_folder: a verb's --out that holds another verb's output is refused, naming
both; a finished one of the same kind needs --overwrite."""

import json

import pytest

from raylib.errors import ConfigError
from raylib.formats import out_folder


def test_a_folder_says_what_it_holds_and_refuses_another_kind(tmp_path):
    m = tmp_path / "maps" / "2010"
    m.mkdir(parents=True)
    (m / "_landcover.json").write_text(json.dumps({"job": "x", "kind": "map"}))
    (m / "_SUCCESS").write_text("")
    assert out_folder.holds(str(m)) == "map"
    with pytest.raises(ConfigError, match=r"holds a map \(landcover map\), not an export \(landcover export\)\. "
                                          r"Fix: choose another --out"):
        out_folder.check(str(m), "export", overwrite=True)  # (--overwrite would have cleared the map)
    e = tmp_path / "exports" / "2010"
    e.mkdir(parents=True)
    (e / "export.json").write_text("{}")
    (e / "_SUCCESS").write_text("")
    with pytest.raises(ConfigError, match="already holds an export .* Fix: pass --overwrite"):
        out_folder.check(str(e), "export", overwrite=False)
    out_folder.check(str(e), "export", overwrite=True)
    out_folder.unfinish(str(e))
    out_folder.check(str(e), "export", overwrite=False)  # an unfinished export of its own: written over
    assert out_folder.holds(str(tmp_path / "new")) is None
    out_folder.check(str(tmp_path / "new"), "assessment", overwrite=False)
    c = tmp_path / "change"
    c.mkdir()
    (c / "_landcover.json").write_text(json.dumps({"job": "y", "kind": "change"}))
    with pytest.raises(ConfigError, match="holds a change map"):
        out_folder.check(str(c), "accounts", overwrite=False)
