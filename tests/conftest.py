"""Shared fixtures: tiny models and small images keep the suite fast on a 2-core CPU.

``pytest --device cuda`` runs the device-independent tests (those taking the ``device`` fixture) on a GPU.
"""

from __future__ import annotations

import pytest
import torch

from airnet_restore.models import AirNet, AirNetConfig

# fp32 results on CUDA differ from the CPU's by about 1e-3: cuDNN convolutions use TF32 by default.
TF32_TOL = 3e-3

TINY = AirNetConfig(n_feats=16, n_groups=1, n_blocks=2, enc_channels=(16, 16, 32), dim=32, queue_size=32)


def make_tiny(seed: int = 0, randomize_dcn: bool = True) -> AirNet:
    """A tiny AirNet; the zero-initialised offset convs get random weights so the DCN really deforms."""
    torch.manual_seed(seed)
    model = AirNet(TINY)
    if randomize_dcn:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "conv_offset_mask" in name:
                    p.normal_(0.0, 0.05)
    return model


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--device", default="cpu", help="device of the device-independent tests: cpu, cuda or cuda:N")


def pytest_configure(config: pytest.Config) -> None:
    spec = config.getoption("--device")
    if spec != "cpu" and not (spec.startswith("cuda") and torch.cuda.is_available()):
        raise pytest.UsageError(f"--device {spec}: use cpu, or cuda[:N] on a machine with CUDA")


@pytest.fixture
def device(request: pytest.FixtureRequest) -> torch.device:
    """The device given by ``--device`` (default cpu)."""
    return torch.device(request.config.getoption("--device"))


def tol(device: torch.device, cpu: float) -> dict[str, float]:
    """``assert_close`` tolerances for float32 results: ``cpu`` on the CPU, at least TF32's on CUDA."""
    value = cpu if device.type == "cpu" else max(cpu, TF32_TOL)
    return {"atol": value, "rtol": value}


def cpu_only(impl: str, device: torch.device) -> None:
    """Skip a case of the numba implementation, which runs on the CPU only."""
    if impl == "numba" and device.type != "cpu":
        pytest.skip("the numba deformable convolution runs on the CPU only")


@pytest.fixture
def tiny_model() -> AirNet:
    return make_tiny()


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(2)
    yield
