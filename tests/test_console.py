"""console: progress lines, and Ray's native log lines kept off a plain run's stderr."""

import io
import os

from raylib import console


def test_progress_on_a_pipe_prints_one_line_per_tenth():
    out = io.StringIO()
    p = console.Progress("map", 100, stream=out)
    for _ in range(50):
        p.update(2)
    p.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 10 and lines[0].startswith("map: 10/100 tiles") and "ETA" in lines[0]
    assert lines[-1].startswith("map: 100/100 tiles") and lines[-1].endswith("done")
    resumed = console.Progress("finetune", 10, "epochs", stream=io.StringIO(), initial=4)
    resumed.update(1)
    assert resumed.line().startswith("finetune: 5/10 epochs")


def test_native_log_lines_are_dropped_and_the_rest_passes(capfd):
    console.hide_native_logs()
    try:
        os.write(2, b"[2026-11-29 19:04:54,056 E 10036 10036] core_worker.cc:2465: Actor with class name ...\n")
        os.write(2, b"landcover map: error: something the user must see\n")
        os.write(2, b"[2026-11-29 19:04:54,057 F 1 1] fatal lines stay\n")
    finally:
        console.restore_stderr()
    err = capfd.readouterr().err
    assert "core_worker" not in err
    assert "something the user must see" in err and "fatal lines stay" in err
