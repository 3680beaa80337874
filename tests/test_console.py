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


def test_a_growing_total_keeps_the_lines_coming_and_done_comes_at_the_close():
    """16 small scenes: the total grows as they are planned; reaching an early total is not
    the end (it printed '16/16 tiles done' and then nothing while 256 tiles were mapped)."""
    out = io.StringIO()
    p = console.Progress("map", 16, stream=out, initial=16)  # the first rows, mapped before the pipeline
    assert p.line().startswith("map: 16/16 tiles") and "--" in p.line()  # no rate from the first rows
    for i in range(24):  # the scenes' tiles are learnt ahead of the rows coming back
        if i < 12:
            p.grow(p.total + 20)
        p.update(10)
    p.close()
    lines = out.getvalue().splitlines()
    assert 5 <= len(lines) <= 14 and all("done" not in ln for ln in lines[:-1])
    assert lines[-1].startswith("map: 256/256 tiles") and lines[-1].endswith("done")


def test_on_a_terminal_a_tqdm_bar_redraws_in_place():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    out = Tty()
    p = console.Progress("map", 100, stream=out)
    for _ in range(10):
        p.update(10)
    p.grow(120)
    p.update(20)
    p.close()
    text = out.getvalue()
    assert "\r" in text and text.count("\n") == 1 and "120/120" in text and "map:" in text
    assert p.bar is None or p.bar.total == 120
    import pickle

    p._stream = None
    assert pickle.loads(pickle.dumps(p)).done == 120  # a Progress travels (Tune's callback): its bar stays


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
