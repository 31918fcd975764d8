"""The cloud's background services, started and stopped with the app."""

from __future__ import annotations

from typing import Protocol

from cloud import wakeups
from cloud.context import AppContext
from cloud.notify.jobs import notify_jobs
from cloud.notify.worker import DeliveryWorker
from cloud.scheduler import Scheduler, core_jobs
from cloud.vision.worker import VisionWorker
from cloud.worker import Crew


class Service(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


def build_services(ctx: AppContext) -> list[Service]:
    """Workers and the scheduler, per the settings; each concern adds its own here."""
    services: list[Service] = []
    if ctx.settings.run_scheduler:
        services.append(Scheduler(ctx, core_jobs(ctx) + notify_jobs(ctx)))
    services.append(DeliveryWorker(ctx))
    vision = Crew(ctx, wakeups.VISION)  # a new job wakes one of them, not all
    services.extend(
        VisionWorker(ctx, name=f"vision-worker-{n}", crew=vision) for n in range(ctx.settings.vision.workers)
    )
    return services
