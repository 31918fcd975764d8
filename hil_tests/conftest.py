"""The ``board`` fixture: a real ESP32-CAM when ``MAILCAM_HIL_PORT`` is set, else the virtual board.

Real board (see README.md): ``MAILCAM_HIL_PORT`` (serial port), ``MAILCAM_HIL_BROKER_HOST`` /
``MAILCAM_HIL_BROKER_PORT`` (a broker the board reaches over Wi-Fi and this machine reaches too),
``MAILCAM_HIL_WIFI_SSID`` / ``MAILCAM_HIL_WIFI_PASSWORD``; optional ``MAILCAM_HIL_BROKER_USER`` /
``MAILCAM_HIL_BROKER_PASSWORD`` (the board's login), ``MAILCAM_HIL_WATCH_USER`` /
``MAILCAM_HIL_WATCH_PASSWORD`` (the test's subscriber), ``MAILCAM_HIL_MPY=0`` (copy sources, not .mpy).
Virtual board: a private Mosquitto on a free loopback port, the MicroPython unix port, nothing to set.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Callable, Iterator

import pytest

from hil_tests.boards import BrokerAddress, RealBoard, VirtualBoard, Watcher
from tests.brokers import Mosquitto

REAL_PORT = os.environ.get("MAILCAM_HIL_PORT")


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.exit(f"{name} must be set to test the board on {REAL_PORT} (see hil_tests/README.md)", returncode=4)
    return value


def _mpy() -> bool:
    return os.environ.get("MAILCAM_HIL_MPY", "1") != "0"


def camera_jpeg() -> bytes:
    """What the virtual camera returns: a real SVGA JPEG with some texture (about 30-60 KB)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:600, 0:800]
    scene = np.stack([(xx * 0.3) % 256, (yy * 0.4) % 256, (xx + yy) * 0.1 % 256], -1)
    pixels = np.clip(scene + rng.normal(0, 5, scene.shape), 0, 255).astype("uint8")
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, "JPEG", quality=60)
    return out.getvalue()


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerAddress]:
    if REAL_PORT:
        yield BrokerAddress(
            host=_env("MAILCAM_HIL_BROKER_HOST"),
            port=int(os.environ.get("MAILCAM_HIL_BROKER_PORT", "1883")),
            user=os.environ.get("MAILCAM_HIL_BROKER_USER"),
            password=os.environ.get("MAILCAM_HIL_BROKER_PASSWORD"),
        )
        return
    mq = Mosquitto(tmp_path_factory.mktemp("mosquitto")).start()
    try:
        yield BrokerAddress(mq.host, mq.port)
    finally:
        mq.stop()


@pytest.fixture(scope="session")
def deployed_board(
    broker: BrokerAddress, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RealBoard | VirtualBoard]:
    """The firmware installed once per session."""
    workdir = tmp_path_factory.mktemp("board")
    board: RealBoard | VirtualBoard
    if REAL_PORT:
        board = RealBoard(REAL_PORT, broker, _env("MAILCAM_HIL_WIFI_SSID"),
                          os.environ.get("MAILCAM_HIL_WIFI_PASSWORD", ""), workdir, mpy=_mpy())
    else:
        board = VirtualBoard(workdir / "flash", broker, camera_jpeg(), mpy=_mpy())
    board.deploy()
    yield board
    board.close()


@pytest.fixture
def board(deployed_board: RealBoard | VirtualBoard) -> RealBoard | VirtualBoard:
    """The board, configured with a serial of its own for this test (own topics, own broker session)."""
    deployed_board.configure("hil-" + uuid.uuid4().hex[:10])
    return deployed_board


@pytest.fixture
def watch(broker: BrokerAddress) -> Iterator[Callable[[str], Watcher]]:
    """Subscribe to a topic filter before the board wakes; closed after the test."""
    watchers: list[Watcher] = []

    def make(topic: str) -> Watcher:
        w = Watcher(broker, topic, user=os.environ.get("MAILCAM_HIL_WATCH_USER"),
                    password=os.environ.get("MAILCAM_HIL_WATCH_PASSWORD"))
        watchers.append(w)
        return w

    yield make
    for w in watchers:
        w.close()


def pytest_report_header(config: pytest.Config) -> str:
    return f"mailcam HIL: {'real board on ' + REAL_PORT if REAL_PORT else 'virtual board (MicroPython unix port)'}"
