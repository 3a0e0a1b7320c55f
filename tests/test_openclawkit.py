"""The OpenClaw test kit: skip only when the registry is unreachable, and never under CI=true."""

import pytest

import openclawkit

UNREACHABLE = {"npm_config_registry": "http://127.0.0.1:9/", "npm_config_fetch_retries": "0"}


@pytest.fixture
def no_registry(monkeypatch, tmp_path):
    monkeypatch.setenv("CLAWGATE_OPENCLAW_CACHE", str(tmp_path / "cache"))
    for key, value in UNREACHABLE.items():
        monkeypatch.setenv(key, value)


def test_an_unreachable_registry_skips_with_the_reason(no_registry, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="npm"):
        openclawkit.require()


def test_an_unreachable_registry_fails_under_ci(no_registry, monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        openclawkit.require()


def test_the_cache_is_one_directory_per_pinned_pair(monkeypatch, tmp_path):
    monkeypatch.setenv("CLAWGATE_OPENCLAW_CACHE", str(tmp_path))
    assert openclawkit.installed() is None  # nothing counts without its .complete marker
    root = tmp_path / f"openclaw-{openclawkit.OPENCLAW_VERSION}-node-{openclawkit.NODE_VERSION}"
    root.mkdir()
    (root / ".complete").write_text("")
    assert openclawkit.installed().root == root
