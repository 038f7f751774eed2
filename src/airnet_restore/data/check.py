"""``airnet data check``: can this folder be trained or evaluated on, and if not, why."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from airnet_restore.data.layouts import Pair, read_layout
from airnet_restore.errors import AirNetError
from airnet_restore.image_io import read_image


@dataclass
class DataReport:
    layout: str
    root: Path
    items: int = 0
    missing_partner: list[Path] = field(default_factory=list)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    size_mismatch: list[Pair] = field(default_factory=list)
    grey: int = 0
    colour: int = 0
    min_size: tuple[int, int] | None = None
    max_size: tuple[int, int] | None = None

    @property
    def usable(self) -> bool:
        return self.items > 0 and not (self.missing_partner or self.unreadable or self.size_mismatch)

    def lines(self) -> list[str]:
        out = [f"{self.root} as layout '{self.layout}': {self.items} {'pairs' if self.layout != 'clean' else 'images'}"]
        out.append(f"  colour {self.colour}, grey {self.grey}; sizes (W x H) from {_wh(self.min_size)} to {_wh(self.max_size)}")
        for label, items in (
            ("without a partner", [str(p) for p in self.missing_partner]),
            ("unreadable", [f"{p}: {why}" for p, why in self.unreadable]),
            ("degraded/clean size differs", [f"{p.degraded} vs {p.clean}" for p in self.size_mismatch]),
        ):
            if items:
                out.append(f"  {len(items)} {label}:")
                out += [f"    {x}" for x in items[:10]] + ([f"    ... and {len(items) - 10} more"] if len(items) > 10 else [])
        out.append("  OK: usable for training and evaluation" if self.usable else "  NOT USABLE: fix the problems above")
        return out


def _wh(size: tuple[int, int] | None) -> str:
    return f"{size[0]}x{size[1]}" if size else "-"


def _probe(path: Path, report: DataReport) -> tuple[int, int] | None:
    """Decode ``path`` fully, as training and evaluation will (a JPEG's header alone says nothing
    of a truncated body); its (W, H), or ``None`` where it is unreadable."""
    try:
        image = read_image(path)
    except AirNetError as e:
        report.unreadable.append((path, str(e).removeprefix(f"{path}: ")))
        return None
    if image.grey:
        report.grey += 1
    else:
        report.colour += 1
    size = (image.rgb.shape[1], image.rgb.shape[0])
    report.min_size = size if report.min_size is None else (min(report.min_size[0], size[0]), min(report.min_size[1], size[1]))
    report.max_size = size if report.max_size is None else (max(report.max_size[0], size[0]), max(report.max_size[1], size[1]))
    return size


def check_data(root: str | Path, layout: str = "clean") -> DataReport:
    """Read ``root`` as ``layout`` and probe every file; layout errors raise ``AirNetError``."""
    items, missing = read_layout(root, layout)
    report = DataReport(layout, Path(root), items=len(items), missing_partner=missing)
    for item in items:
        if isinstance(item, Pair):
            size = _probe(item.degraded, report)
            clean_size = _probe(item.clean, report)
            if size and clean_size and size != clean_size:
                report.size_mismatch.append(item)
        else:
            _probe(item, report)
    return report
