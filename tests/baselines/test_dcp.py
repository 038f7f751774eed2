"""The dark channel prior (baselines/dcp.py), after a blind denoiser as the evaluation runs it."""

from airnet_restore.baselines import dehaze_dcp, wavelet
from tests.baselines.conftest import add_noise


def test_wavelet_then_dcp_runs_on_hazy_noise(clean):
    hazy = 0.5 * clean + 0.45
    out = dehaze_dcp(wavelet(add_noise(hazy, 15)))
    assert out.shape == clean.shape and out.std() > hazy.std()
