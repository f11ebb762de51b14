"""The demo page in a real headless browser: start `python -m zoo demo` on localhost, upload a
synthetic photo with Chromium (selenium + Debian's chromium-driver), wait for the outputs and take a
screenshot. Slow (a server start and a whole avatar); skipped without gradio, selenium or chromium."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.avatar.test_avatar_command import photos, tiny_checkpoint  # noqa: F401 - shared fixtures

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, server: subprocess.Popen, timeout: float = 240.0) -> None:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if server.poll() is not None:
            raise RuntimeError(f"the demo server exited with {server.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1.0)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None or DRIVER is None, reason="needs Debian's chromium and chromium-driver")
def test_demo_in_headless_chromium(mediapipe_models, photos, tiny_checkpoint, tmp_path):  # noqa: F811
    pytest.importorskip("gradio")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GRADIO_ANALYTICS_ENABLED": "False"}
    with open(tmp_path / "server.log", "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "zoo", "demo", "--ckpt", str(tiny_checkpoint), "--port", str(port), "--fit-steps",
             "10", "10", "5", "--render-size", "64", "--work-dir", str(tmp_path / "work")],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
        driver = None
        try:
            url = f"http://127.0.0.1:{port}/"
            _wait_for(url, server)
            options = webdriver.ChromeOptions()
            options.binary_location = CHROMIUM
            for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1900"):
                options.add_argument(flag)
            driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=options)
            driver.get(url)
            wait = WebDriverWait(driver, 300)
            upload = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#photo input[type=file]"))
            upload.send_keys(str(photos / "person.png"))
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#photo img"))
            driver.find_element(By.CSS_SELECTOR, "#run").click()
            wait.until(lambda d: "Done" in d.find_element(By.CSS_SELECTOR, "#message").text)
            for elem in ("keypoints", "fit", "texture", "views", "turntable", "motion"):
                wait.until(lambda d, e=elem: d.find_elements(By.CSS_SELECTOR, f"#{e} img"))
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#downloads a, #downloads .file-name"))
            time.sleep(2)  # let the images and the 3D viewer paint
            shot = tmp_path / "demo.png"
            driver.save_screenshot(str(shot))
            if os.environ.get("ZOO_DEMO_SCREENSHOT"):
                shutil.copy(shot, os.environ["ZOO_DEMO_SCREENSHOT"])
        finally:
            if driver is not None:
                driver.quit()
            server.terminate()
            server.wait(timeout=30)
    picture = np.asarray(Image.open(shot).convert("RGB"))
    assert picture.shape[0] > 500 and picture.std() > 10  # a page with content, not a blank screen
