"""Settings: env prefix, comma lists, validation messages, and `python -m service` refusing bad ones."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import DEFAULT_MODEL_STORE, ModelSpec, Settings, describe_validation_error

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("TRANSLATOR_"):
            monkeypatch.delenv(key)


def test_defaults() -> None:
    settings = Settings()
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.model_store == DEFAULT_MODEL_STORE
    assert settings.models == []
    assert (settings.variant, settings.providers, settings.batching) == ("fp32", "cpu", "continuous")
    assert settings.drain_timeout_s == 20.0
    assert settings.log_request_text is False
    assert settings.all_api_keys() == []


def test_environment_is_read_with_prefix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRANSLATOR_PORT", "9001")
    monkeypatch.setenv("TRANSLATOR_MODEL_STORE", str(tmp_path))
    monkeypatch.setenv("TRANSLATOR_MODELS", "en-de@2, fr-en")
    monkeypatch.setenv("TRANSLATOR_BATCHING", "static")
    monkeypatch.setenv("TRANSLATOR_LOG_LEVEL", "debug")
    settings = Settings()
    assert settings.port == 9001
    assert settings.model_store == tmp_path
    assert settings.models == [ModelSpec("en-de", "2"), ModelSpec("fr-en", None)]
    assert settings.batching == "static"
    assert settings.log_level == "DEBUG"


def test_api_keys_from_env_and_file_are_secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text("# comment\nfile-key\n\n", encoding="utf-8")
    monkeypatch.setenv("TRANSLATOR_API_KEYS", "alpha, beta")
    monkeypatch.setenv("TRANSLATOR_API_KEYS_FILE", str(key_file))
    settings = Settings()
    assert settings.all_api_keys() == [b"alpha", b"beta", b"file-key"]
    assert "alpha" not in repr(settings) and "alpha" not in str(settings)


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("TRANSLATOR_PORT", "eighty", "TRANSLATOR_PORT"),
        ("TRANSLATOR_PORT", "70000", "TRANSLATOR_PORT"),
        ("TRANSLATOR_BATCHING", "dynamic", "TRANSLATOR_BATCHING"),
        ("TRANSLATOR_PROVIDERS", "tpu", "TRANSLATOR_PROVIDERS"),
        ("TRANSLATOR_VARIANT", "fp16", "TRANSLATOR_VARIANT"),
        ("TRANSLATOR_MODELS", "en-de@", "TRANSLATOR_MODELS"),
        ("TRANSLATOR_MODEL_STORE", "/no/such/store", "is not a directory"),
        ("TRANSLATOR_MAX_BATCH_ROWS", "0", "TRANSLATOR_MAX_BATCH_ROWS"),
        ("TRANSLATOR_MAX_SENTENCES_PER_TEXT", "0", "TRANSLATOR_MAX_SENTENCES_PER_TEXT"),
        ("TRANSLATOR_API_KEYS_FILE", "/no/such/file", "TRANSLATOR_API_KEYS_FILE"),
        ("TRANSLATOR_KEEP_VERBATIM", "url,phone", "TRANSLATOR_KEEP_VERBATIM"),
    ],
)
def test_invalid_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert fragment in describe_validation_error(caught.value)


def test_what_is_kept_verbatim_is_a_list_of_kinds(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().keep_verbatim == ["url", "email", "path", "number"]
    monkeypatch.setenv("TRANSLATOR_KEEP_VERBATIM", "url, email")
    assert Settings().keep_verbatim == ["url", "email"]
    monkeypatch.setenv("TRANSLATOR_KEEP_VERBATIM", "")
    assert Settings().keep_verbatim == []


def test_duplicate_model_names_are_refused() -> None:
    with pytest.raises(ValidationError, match="more than once"):
        Settings(models="en-de@1,en-de@2")


def test_python_m_service_exits_with_a_readable_message_on_bad_settings() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRANSLATOR_")}
    env |= {"TRANSLATOR_PORT": "not-a-port", "TRANSLATOR_BATCHING": "sometimes"}
    done = subprocess.run(
        [sys.executable, "-m", "service"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "invalid settings" in done.stderr
    assert "TRANSLATOR_PORT" in done.stderr and "TRANSLATOR_BATCHING" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_encoder_gets_half_the_cpus_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    cpus = len(os.sched_getaffinity(0))
    assert Settings().encoder_threads == max(1, cpus // 2)
    monkeypatch.setenv("TRANSLATOR_ENCODER_INTRA_OP_THREADS", "3")
    assert Settings().encoder_threads == 3


@pytest.mark.parametrize(("cpus", "lanes", "expected"), [(1, "32", 1), (2, "32", 1), (2, "", 1), (16, "32", 7),
                                                      (16, "", 8), (16, "16,32,64", 5)])
def test_the_decoder_lanes_and_their_shared_pool_take_the_cpus_the_encoder_leaves(
        monkeypatch: pytest.MonkeyPatch, cpus: int, lanes: str, expected: int) -> None:
    """One decoder session for all lanes: each lane computes on its own thread plus the session's
    pool (threads - 1), so lanes + threads - 1 = the CPUs the encoder leaves."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)))
    monkeypatch.setenv("TRANSLATOR_DECODER_LANE_BOUNDS", lanes)
    assert Settings().decoder_threads == expected
    monkeypatch.setenv("TRANSLATOR_ENCODER_INTRA_OP_THREADS", "2")
    count = lanes.count(",") + 1 + bool(lanes)
    assert Settings().decoder_threads == max(1, cpus - 2 - count + 1)
    monkeypatch.setenv("TRANSLATOR_INTRA_OP_THREADS", "3")  # told: as told
    assert Settings().decoder_threads == 3


def test_the_gil_switch_interval_is_short_by_default_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().gil_switch_interval_ms == 0.5  # the decoder's thread needs the GIL after every step
    monkeypatch.setenv("TRANSLATOR_GIL_SWITCH_INTERVAL_MS", "0")  # 0: leave Python's default
    assert Settings().gil_switch_interval_ms == 0
    monkeypatch.setenv("TRANSLATOR_GIL_SWITCH_INTERVAL_MS", "-1")
    with pytest.raises(ValidationError):
        Settings()


def test_decoder_lanes_split_at_32_tokens_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().decoder_lane_bounds == [32]
    monkeypatch.setenv("TRANSLATOR_DECODER_LANE_BOUNDS", "16, 48")
    assert Settings().decoder_lane_bounds == [16, 48]
    monkeypatch.setenv("TRANSLATOR_DECODER_LANE_BOUNDS", "")  # one lane
    assert Settings().decoder_lane_bounds == []
    for bad in ("0", "short"):
        monkeypatch.setenv("TRANSLATOR_DECODER_LANE_BOUNDS", bad)
        with pytest.raises(ValidationError) as caught:
            Settings()
        assert "TRANSLATOR_DECODER_LANE_BOUNDS" in describe_validation_error(caught.value)


def test_a_static_batch_wait_longer_than_the_request_timeout_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every request that did not fill a batch would wait past its deadline: 504 for all of them."""
    monkeypatch.setenv("TRANSLATOR_BATCHING", "static")
    monkeypatch.setenv("TRANSLATOR_STATIC_MAX_WAIT_MS", "3000")
    monkeypatch.setenv("TRANSLATOR_REQUEST_TIMEOUT_S", "1")
    with pytest.raises(ValidationError, match="TRANSLATOR_STATIC_MAX_WAIT_MS"):
        Settings()
    monkeypatch.setenv("TRANSLATOR_BATCHING", "continuous")  # the wait does not apply: fine
    assert Settings().static_max_wait_ms == 3000


def test_the_translation_cache_is_on_unless_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRANSLATOR_CACHE_MB", raising=False)  # the suite turns it off (tests/conftest.py)
    assert Settings().cache_mb == 64
    monkeypatch.setenv("TRANSLATOR_CACHE_MB", "0")
    assert Settings().cache_mb == 0
    monkeypatch.setenv("TRANSLATOR_CACHE_MB", "-1")
    with pytest.raises(ValueError):
        Settings()
