"""`airnet serve` end to end in a real headless Chromium: upload, slider, download = `airnet restore`.

It runs the real command with the default weights on the bundled sample photo and saves the
page as docs/serve-screenshot.png. Marked slow (``pytest -m slow tests/web/test_serve_browser.py``,
which .ci/run runs); skipped only where no Chromium is installed (.ci/run installs Debian's);
AIRNET_CHROMIUM names another executable.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from playwright.sync_api import expect, sync_playwright

from airnet_restore.cli import main
from airnet_restore.variants import sample_image

CHROMIUM = os.environ.get("AIRNET_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOT = Path(__file__).parents[2] / "docs" / "serve-screenshot.png"

pytestmark = [
    pytest.mark.slow,  # 40-60 s on 2 busy cores, mostly starting the server; .ci/run runs it
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (apt-get install chromium; .ci/run does)"),
]

DROP = """([name, data]) => {
  const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
  const transfer = new DataTransfer();
  transfer.items.add(new File([bytes], name, {type: "image/png"}));
  return transfer;
}"""


@pytest.fixture
def served_url():
    """`airnet serve --port 0` with the default weights; its URL once the model is ready."""
    proc = subprocess.Popen([sys.executable, "-m", "airnet_restore", "serve", "--port", "0", "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        found = re.search(r"http://\S+", proc.stdout.readline())
        assert found, proc.stderr.read() if proc.poll() is not None else "no address printed"
        yield found.group(0)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_upload_compare_and_download_in_a_real_browser(served_url, tmp_path):
    sample = sample_image()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 760})
            page.goto(served_url)
            expect(page.locator("#model")).to_contain_text("airnet-general")

            truncated = base64.b64encode(Path(sample).read_bytes()[:400]).decode()
            page.dispatch_event("#drop", "drop", {"dataTransfer": page.evaluate_handle(DROP, ["cut.png", truncated])})
            expect(page.locator("#status")).to_contain_text("Not restored: corrupt or truncated image")

            page.set_input_files("#file", str(sample))
            page.locator("#download").wait_for(state="visible", timeout=180_000)
            assert page.locator("#before").is_visible() and page.locator("#after").is_visible()
            page.locator("#slider").fill("30")
            assert page.eval_on_selector("#frame", "e => e.style.getPropertyValue('--pos')") == "30%"
            page.locator("#slider").fill("50")
            page.dispatch_event("#slider", "input")
            with page.expect_download() as info:
                page.click("#download")
            download = info.value
            assert download.suggested_filename == "sample_noisy_restored.png"
            download.save_as(tmp_path / "downloaded.png")
            SCREENSHOT.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
        finally:
            browser.close()

    assert main(["restore", str(sample), "-o", str(tmp_path / "cli"), "--ext", "png", "--device", "cpu", "-q"]) == 0
    downloaded = cv2.imread(str(tmp_path / "downloaded.png"), cv2.IMREAD_UNCHANGED)
    expected = cv2.imread(str(tmp_path / "cli" / "sample_noisy.png"), cv2.IMREAD_UNCHANGED)
    assert downloaded.shape == expected.shape and downloaded.dtype == expected.dtype
    np.testing.assert_array_equal(downloaded, expected)
