"""Reason codes, retries, timeouts and redaction (no Ray, no network)."""

import threading
import time

import pytest
import rasterio

from raylib.errors import ConfigError, InputError
from raylib.io import resilience, storage


def _gdal_error(path):
    try:
        rasterio.open(path)
    except Exception as exc:
        return exc
    raise AssertionError("opened")


def test_reasons_of_real_gdal_failures(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    (tmp_path / "text.tif").write_bytes(b"not a tiff")
    assert resilience.classify(_gdal_error(tmp_path / "text.tif"))[0] == "corrupt"
    with rasterio.Env(AWS_S3_ENDPOINT="127.0.0.1:9", AWS_HTTPS="NO", AWS_VIRTUAL_HOSTING="FALSE",
                      GDAL_HTTP_MAX_RETRY="0"):
        assert resilience.classify(_gdal_error("/vsis3/bucket/key.tif"))[0] == "read_error"
    assert resilience.classify(InputError("x", reason="band_mismatch"))[0] == "band_mismatch"
    assert resilience.classify(resilience.ReadTimeout("slow"))[0] == "timeout"
    assert resilience.classify(OSError("HTTP response code: 403"))[0] == "permission_denied"


def test_retrying_retries_only_transient_failures():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise OSError("CURL error: Connection refused")
        return "ok"

    assert resilience.retrying(flaky, retries=3, sleep=lambda s: None) == "ok" and len(calls) == 3
    calls.clear()

    def corrupt():
        calls.append(1)
        raise OSError("ZIPDecode:Decoding error at scanline 0")

    with pytest.raises(OSError):
        resilience.retrying(corrupt, retries=5, sleep=lambda s: None)
    assert len(calls) == 1
    calls.clear()

    def bug():  # an error of this code, not of the store: reported as such, never retried
        calls.append(1)
        index = None
        return (1, 2)[index]

    with pytest.raises(TypeError):
        resilience.retrying(bug, retries=5, sleep=lambda s: None)
    assert len(calls) == 1
    try:
        bug()
    except TypeError as exc:
        assert resilience.classify(exc)[0] == "internal"
    assert resilience.classify(OSError("something else went wrong"))[0] == "read_error"
    assert all(0.5 <= resilience.backoff(0) <= 1.0 for _ in range(20)) and resilience.backoff(10) <= 15


def test_watchdog_abandons_a_stuck_call_and_keeps_working():
    wd = resilience.Watchdog()
    release = threading.Event()
    t0 = time.time()
    with pytest.raises(resilience.ReadTimeout, match="did not answer within 0.2 s"):
        wd.call(release.wait, 0.2, "reading")
    assert time.time() - t0 < 2
    assert wd.call(lambda: 42, 1) == 42  # a fresh helper thread
    with pytest.raises(ValueError):
        wd.call(lambda: int("x"), 1)
    release.set()


def test_redact_removes_credentials(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEKEY")
    text = ("failed https://h/b/k?X-Amz-Credential=AKIAEXAMPLEKEY/x&X-Amz-Signature=abcdef "
            "Authorization: AWS4-HMAC-SHA256 very-secret-value")
    out = resilience.redact(text)
    assert "very-secret-value" not in out and "AKIAEXAMPLEKEY" not in out and "abcdef" not in out


def test_names_cannot_leave_the_output_folder():
    assert storage.join("s3://b/out", "_quicklook", "a.png") == "s3://b/out/_quicklook/a.png"
    for bad in ("../x", "a/../../x", "/etc/passwd"):
        with pytest.raises(ConfigError, match="would leave"):
            storage.join("s3://b/out", bad)
        with pytest.raises(ConfigError, match="would leave"):
            storage.join("/tmp/out", bad)
