"""A local S3-compatible server for the tests: moto's standalone server (``moto[server]``).

moto is a stand-in for a real object store (AWS S3, MinIO, R2, Garage): it speaks the S3 REST
API that boto3 talks, on a loopback port, in its own process, so our code runs through the real
SDK, real HTTP and real signing. It is not a durability test of any real service.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from dataclasses import dataclass, field

from tests.brokers import free_port, wait_for_port

ACCESS_KEY = "testing-access-key"
SECRET_KEY = "testing-secret-key"  # moto accepts any credentials
REGION = "us-east-1"


@dataclass
class MotoServer:
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoServer:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port("127.0.0.1", self.port, 30)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def settings(self, url: str, **extra):
        """``ImageSettings`` pointing at this server (path-style addressing: the endpoint is an IP)."""
        from cloud.imagestore.config import ImageSettings

        return ImageSettings(
            url=url,
            endpoint_url=self.endpoint_url,
            region=REGION,
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
            addressing_style="path",
            **extra,
        )

    def new_bucket(self) -> str:
        """A fresh bucket (one per test: no test sees another's objects)."""
        from cloud.imagestore.s3 import make_client

        name = f"mailcam-{uuid.uuid4().hex[:16]}"
        make_client(self.settings(f"s3://{name}")).create_bucket(Bucket=name)
        return name
