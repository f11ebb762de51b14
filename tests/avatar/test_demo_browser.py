"""The demo page in a real headless browser: start `python -m zoo demo` on localhost, upload a
synthetic photo and an AMASS-style motion with Chromium (selenium + Debian's chromium-driver), wait for the outputs and take a
screenshot; the GLB viewer (Babylon.js on WebGL, here SwiftShader's CPU WebGL) must draw the avatar
(non-white pixels in its canvas). Slow (a server start and a whole avatar); skipped without gradio,
selenium or chromium."""
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


def _drawn_fraction(element_or_png) -> float:
    """Share of the viewer canvas' middle (below its label and buttons) that differs from white."""
    import io

    png = element_or_png if isinstance(element_or_png, bytes) else element_or_png.screenshot_as_png
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    h, w, _ = image.shape
    middle = image[int(0.2 * h):, int(0.2 * w):int(0.8 * w)]
    return float((np.abs(middle - 255).sum(-1) > 30).mean()) if middle.size else 0.0


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None or DRIVER is None, reason="needs Debian's chromium and chromium-driver")
def test_demo_in_headless_chromium(mediapipe_models, photos, tiny_checkpoint, tmp_path):  # noqa: F811
    pytest.importorskip("gradio")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.export.test_amass import random_poses, write_amass

    amass = write_amass(tmp_path / "amass_walk.npz", random_poses(16, 165, scale=0.2), np.zeros((16, 3)), fps=120.0)
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
            # WebGL without a GPU: ANGLE on SwiftShader (CPU), which Chromium no longer falls back to on its own.
            for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1900",
                         "--use-angle=swiftshader", "--enable-unsafe-swiftshader"):
                options.add_argument(flag)
            driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=options)
            driver.get(url)
            wait = WebDriverWait(driver, 300)
            upload = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#photo input[type=file]"))
            upload.send_keys(str(photos / "person.png"))
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#photo img"))
            driver.find_element(By.CSS_SELECTOR, "#motion_file input[type=file]").send_keys(str(amass))
            wait.until(lambda d: "amass_walk" in d.find_element(By.CSS_SELECTOR, "#motion_file").text)
            driver.find_element(By.CSS_SELECTOR, "#run").click()
            wait.until(lambda d: "Done" in d.find_element(By.CSS_SELECTOR, "#message").text)
            for elem in ("keypoints", "fit", "texture", "views", "turntable", "motion"):
                wait.until(lambda d, e=elem: d.find_elements(By.CSS_SELECTOR, f"#{e} img"))
            wait.until(lambda d: "motion.mp4" in d.find_element(By.CSS_SELECTOR, "#downloads").get_attribute("innerHTML"))
            viewer = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#model3d canvas"))
            # Babylon.js (Gradio's Model3D) draws the GLB through SwiftShader's software WebGL: seconds.
            drawn = WebDriverWait(driver, 180, poll_frequency=2).until(lambda d: _drawn_fraction(viewer) > 0.02)
            time.sleep(1)  # let the other images paint
            shot = tmp_path / "demo.png"
            driver.save_screenshot(str(shot))
            viewer_shot = tmp_path / "viewer.png"
            viewer_shot.write_bytes(viewer.screenshot_as_png)
            if os.environ.get("ZOO_DEMO_SCREENSHOT"):
                shutil.copy(shot, os.environ["ZOO_DEMO_SCREENSHOT"])
        finally:
            if driver is not None:
                driver.quit()
            server.terminate()
            server.wait(timeout=30)
    picture = np.asarray(Image.open(shot).convert("RGB"))
    assert picture.shape[0] > 500 and picture.std() > 10  # a page with content, not a blank screen
    # The 3D viewer drew the avatar: its canvas shows the body over the (white) clear colour.
    assert drawn and _drawn_fraction(viewer_shot.read_bytes()) > 0.02
