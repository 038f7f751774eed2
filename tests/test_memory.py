import ctypes

import pytest

from airnet_restore import memory


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setattr(memory, "_state", {})
    for name in (memory.OPT_OUT, "GLIBC_TUNABLES", *memory.USER_SETTINGS):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _is_glibc():
    return hasattr(ctypes.CDLL(None), "gnu_get_libc_version")


def test_tunes_glibc_once(fresh):
    calls = []
    real = memory._apply
    fresh.setattr(memory, "_apply", lambda: calls.append(1) or real())
    assert memory.tune_allocator() is _is_glibc()
    assert memory.tune_allocator() is _is_glibc()
    assert calls == [1]


def test_opt_out_and_the_users_own_malloc_settings_are_respected(fresh):
    fresh.setenv(memory.OPT_OUT, "0")
    assert memory.tune_allocator() is False
    fresh.setattr(memory, "_state", {})
    fresh.delenv(memory.OPT_OUT)
    fresh.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert memory.tune_allocator() is False


def test_no_op_without_glibc(fresh):
    class NoGlibc:
        def __init__(self, name):
            pass

    fresh.setattr(memory.ctypes, "CDLL", NoGlibc)
    assert memory.tune_allocator() is False
