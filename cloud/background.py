"""The cloud's background services, started and stopped with the app."""

from __future__ import annotations

from typing import Protocol

from cloud.context import AppContext
from cloud.notify.jobs import notify_jobs
from cloud.notify.worker import DeliveryWorker
from cloud.scheduler import Scheduler, core_jobs
from cloud.vision.worker import VisionWorker


class Service(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


def build_services(ctx: AppContext) -> list[Service]:
    """Workers and the scheduler, per the settings; each concern adds its own here."""
    services: list[Service] = []
    if ctx.settings.run_scheduler:
        services.append(Scheduler(ctx, core_jobs(ctx) + notify_jobs(ctx)))
    services.append(DeliveryWorker(ctx))
    services.extend(VisionWorker(ctx, name=f"vision-worker-{n}") for n in range(ctx.settings.vision.workers))
    return services
