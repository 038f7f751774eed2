"""The command lets idle OpenMP threads sleep (threads.py), unless the user chose otherwise."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from airnet_restore import threads


def _policy_seen_by_the_command(env: dict[str, str]) -> str:
    """The OMP_WAIT_POLICY that torch's runtime would read in a fresh ``airnet`` process (printed at its first
    import of torch, after ``main`` has set it up)."""
    code = ("import os, sys; from airnet_restore import cli; cli.wait_passively(); import torch; "
            "print(os.environ.get('OMP_WAIT_POLICY', '-'))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_the_command_sets_passive_waiting_before_torch_loads() -> None:
    base = {k: v for k, v in os.environ.items() if k not in (*threads.USER_SETTINGS, threads.OPT_OUT)}
    assert _policy_seen_by_the_command(base) == "PASSIVE"
    assert _policy_seen_by_the_command({**base, "OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE"
    assert _policy_seen_by_the_command({**base, threads.OPT_OUT: "0"}) == "-"
    assert _policy_seen_by_the_command({**base, "GOMP_SPINCOUNT": "1000"}) == "-"


def test_nothing_is_set_once_torch_is_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch  # noqa: F401  (loaded in this test process already)

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv(threads.OPT_OUT, raising=False)
    assert not threads.wait_passively()
    assert "OMP_WAIT_POLICY" not in os.environ
