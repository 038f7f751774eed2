"""Named model variants as data: an architecture config, an optional bundled weight file, a description."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from airnet_restore.errors import AirNetError
from airnet_restore.models.airnet import AirNet, AirNetConfig


@dataclass(frozen=True)
class Variant:
    name: str
    config: AirNetConfig
    description: str
    weights: str | None = None  # file name under airnet_restore/assets/, if bundled

    def weights_path(self) -> Path | None:
        """The bundled weight file, or None when this variant ships without weights."""
        if self.weights is None:
            return None
        path = Path(str(resources.files("airnet_restore") / "assets" / self.weights))
        return path if path.is_file() else None


# CPU-sized architecture: 24 channels, 3 groups x 3 blocks (467 k parameters needed at inference).
LITE = AirNetConfig(n_feats=24, n_groups=3, n_blocks=3, enc_channels=(24, 64, 128), dim=128)

VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant(
            name="airnet",
            config=AirNetConfig(),
            description="the paper's architecture (CVPR 2022): 5 groups x 5 blocks at 64 channels, 8.93 M parameters. "
            "No weights are bundled: load the official All.pth with --weights PATH or train your own.",
        ),
        Variant(
            name="airnet-lite",
            config=LITE,
            description="a narrower, shallower AirNet for CPUs (the default until v2), trained by this project on "
            "real photographs with the paper's noise (sigma 15/25/50), one rain and one haze model; strong on "
            "Gaussian noise, but it darkens clean photos and does not remove rain unlike its training rain.",
            weights="airnet-lite.safetensors",
        ),
        Variant(
            name="airnet-general",
            config=LITE,
            description="airnet-lite's architecture trained further on the general family (clean photos, noise of "
            "any level and form, randomised rain and haze, mixtures): the default of `airnet restore`; much "
            "gentler on clean photos and better on unseen rain than airnet-lite, weaker on strong Gaussian noise.",
            weights="airnet-general.safetensors",
        ),
    )
}


def sample_image() -> Path:
    """The bundled sample: a noisy (sigma 25) crop of scikit-image's CC0 'coffee' photograph."""
    return Path(str(resources.files("airnet_restore") / "assets" / "sample_noisy.png"))


def list_variants() -> list[Variant]:
    """All registered variants, in registration order."""
    return list(VARIANTS.values())


def get_variant(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        raise AirNetError(f"unknown model variant {name!r}; registered: {', '.join(VARIANTS)}") from None


def load_model(name_or_path: str | Path, device: str = "auto", dcn_impl: str = "auto") -> AirNet:
    """An eval-mode ``AirNet`` from a registered variant name or a weights file, on ``device``."""
    from airnet_restore.device import resolve_device
    from airnet_restore.ops.deform_conv import check_impl
    from airnet_restore.weights import build_model

    target = resolve_device(device)
    check_impl(dcn_impl, target)

    if str(name_or_path) in VARIANTS:
        variant = VARIANTS[str(name_or_path)]
        path = variant.weights_path()
        if path is None:
            raise AirNetError(
                f"variant {variant.name!r} ships without weights; pass a weights file "
                f"(official .pth or our .safetensors) instead"
            )
        model, _ = build_model(path)
    elif Path(name_or_path).suffix or Path(name_or_path).exists():
        model, _ = build_model(name_or_path)
    else:
        raise AirNetError(f"{name_or_path!r} is neither a registered variant ({', '.join(VARIANTS)}) nor a weights file")
    return model.set_dcn_impl(dcn_impl).to(target).eval()
