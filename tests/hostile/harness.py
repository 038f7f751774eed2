"""The hostile suite's harness (issue 34): a case sets up files, protects them, attacks, and says what went wrong.

Each ``cases_<area>.py`` module beside this one holds a ``CASES`` list (``Cases.add``). A case gets a
fresh ``Scene`` (a folder); after it runs, every protected file must be byte for byte as it was, unless
the case said it may change (``Scene.allow``). The verdicts: OK; BAD (a traceback, a wrong exit code,
a silently wrong output); DATA-LOSS (a file the user owns replaced or deleted); SECURITY (the web app
obeys another site, or lets one client starve the others or the machine).
``tests/hostile/test_cases.py`` runs every case as a test; ``benchmarks/hostile_suite.py`` prints the counts.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import pkgutil
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal, NoReturn

Verdict = Literal["OK", "BAD", "DATA-LOSS", "SECURITY"]
VERDICTS: tuple[Verdict, ...] = ("OK", "BAD", "DATA-LOSS", "SECURITY")


class Finding(Exception):
    """What a case found wrong."""

    def __init__(self, verdict: Verdict, message: str) -> None:
        super().__init__(message)
        self.verdict = verdict


def bad(message: str) -> NoReturn:
    raise Finding("BAD", message)


def data_loss(message: str) -> NoReturn:
    raise Finding("DATA-LOSS", message)


def security(message: str) -> NoReturn:
    raise Finding("SECURITY", message)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Scene:
    """A case's folder and the files in it that must survive the attack."""

    root: Path
    protected: dict[Path, str] = field(default_factory=dict)
    allowed: set[Path] = field(default_factory=set)

    def protect(self, *paths: Path) -> None:
        """Record the hashes of ``paths`` (default: every file under the scene now)."""
        files = paths or tuple(p for p in self.root.rglob("*") if p.is_file() and not p.is_symlink())
        for p in files:
            self.protected[Path(p)] = digest(Path(p))

    def allow(self, *paths: Path) -> None:
        """Files the case expects to change (an input replaced with ``--overwrite``, say)."""
        self.allowed.update(Path(p) for p in paths)

    def check(self) -> None:
        for path, before in self.protected.items():
            if path in self.allowed:
                continue
            if not path.is_file():
                data_loss(f"{path.relative_to(self.root)} was deleted")
            if digest(path) != before:
                data_loss(f"{path.relative_to(self.root)} was replaced")


@dataclass(frozen=True)
class Case:
    area: str
    name: str
    run: Callable[[Scene], None]

    @property
    def id(self) -> str:
        return f"{self.area}:{self.name}"


class Cases(list):
    """A module's cases; ``@CASES.add`` registers a function ``(scene) -> None`` under its name."""

    def __init__(self, area: str) -> None:
        super().__init__()
        self.area = area

    def add(self, run: Callable[[Scene], None]) -> Callable[[Scene], None]:
        self.append(Case(self.area, run.__name__, run))
        return run


def run_case(case: Case, root: Path) -> tuple[Verdict, str]:
    """Run ``case`` in the empty folder ``root``; its verdict and what was found."""
    scene = Scene(root)
    try:
        case.run(scene)
        scene.check()
    except Finding as f:
        return f.verdict, str(f)
    except Exception as e:  # noqa: BLE001 - any escaping exception is a traceback a user would see
        return "BAD", f"traceback: {type(e).__name__}: {e}\n{traceback.format_exc(limit=-3)}"
    return "OK", ""


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


def cli(*argv: object) -> Result:
    """``airnet ARGV`` in this process; an exception escaping ``main`` or a traceback printed is BAD."""
    from airnet_restore.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as e:  # argparse's usage errors
            code = e.code if isinstance(e.code, int) else 2
        except Exception as e:  # noqa: BLE001
            bad(f"airnet {' '.join(map(str, argv))}: traceback {type(e).__name__}: {e}")
    result = Result(code, out.getvalue(), err.getvalue())
    if "Traceback" in result.err:
        bad(f"airnet {' '.join(map(str, argv))} printed a traceback: {result.err[-500:]}")
    return result


def refused(result: Result, *words: str) -> None:
    """The command failed (non-zero) with an error line naming each of ``words`` (case-insensitive)."""
    if result.code == 0:
        bad(f"exit 0, expected a refusal: {result.out[-300:]} {result.err[-300:]}")
    text = (result.err + result.out).lower()
    missing = [w for w in words if w.lower() not in text]
    if missing:
        bad(f"the message does not name {missing}: {result.err[-400:]}")


@lru_cache(maxsize=1)
def tiny_weights() -> Path:
    """A tiny model's weights file, written once per process outside every scene."""
    import tempfile

    from airnet_restore.weights import save_weights
    from tests.conftest import make_tiny

    return save_weights(make_tiny(), Path(tempfile.mkdtemp(prefix="airnet-hostile-")) / "tiny.safetensors")


def all_cases() -> list[Case]:
    """Every ``CASES`` of the ``cases_*`` modules beside this one."""
    found: list[Case] = []
    for module in sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.name.startswith("cases_")):
        found += importlib.import_module(f"tests.hostile.{module}").CASES
    return found
