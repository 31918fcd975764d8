"""Everything a request handler, worker or job needs, built once per app."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from cloud.clock import Clock, SystemClock
from cloud.db import make_engine, make_session_factory
from cloud.events import EventSink, FanoutSink, LogSink
from cloud.groupcommit import GroupCommit
from cloud.imagestore import ImageStore, open_image_store
from cloud.lru import Lru
from cloud.services.trigger_watch import mark_gateway_feed_changes
from cloud.settings import Settings
from cloud.wakeups import Wakeups

if TYPE_CHECKING:
    from PIL import Image

    from cloud.billing.stripe_api import StripeApi
    from cloud.vision.pipeline import VisionPipeline


DECODED_KEPT = 32


@dataclass
class AppContext:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    images: ImageStore
    # Commits that create work wake its owner at once, here and in other replicas (cloud.wakeups).
    wakeups: Wakeups
    clock: Clock = field(default_factory=SystemClock)
    events: FanoutSink = field(default_factory=lambda: FanoutSink(LogSink()))
    # The vision providers of this context, built on first use (``cloud.vision.worker.pipeline_for``).
    vision: VisionPipeline | None = field(default=None, repr=False)
    # The Stripe client, built on first use when billing is configured (``cloud.billing.service.stripe_api``).
    stripe: StripeApi | None = field(default=None, repr=False)
    # Ingest's rows, committed together with those of concurrent captures (cloud/groupcommit.py).
    group_commit: GroupCommit = field(init=False, repr=False)
    # New photos as ingest decoded them to prove them whole, by SHA-256, taken by their analysis in this
    # process (``prep.analysis_decode``): a photo's analysis follows its ingest within a moment, so a
    # few suffice (~0.23 MB each from a 640x480 camera); a miss (another replica, a backlog) decodes again.
    decoded: Lru[str, Image.Image] = field(default_factory=lambda: Lru(DECODED_KEPT), repr=False)

    def __post_init__(self) -> None:
        self.group_commit = GroupCommit(self.sessions)

    @classmethod
    def build(cls, settings: Settings, *, clock: Clock | None = None) -> AppContext:
        engine = make_engine(settings.resolved_database_url)
        sessions = make_session_factory(engine)
        mark_gateway_feed_changes(sessions)  # trigger and state commits wake the gateways' long-polls, any replica
        return cls(
            settings=settings,
            engine=engine,
            sessions=sessions,
            images=open_image_store(
                settings.images, settings.resolved_image_dir, thumbnail_side=settings.thumbnail_side
            ),
            wakeups=Wakeups(engine).install(sessions),
            clock=clock or SystemClock(),
        )

    def add_event_sink(self, sink: EventSink) -> None:
        self.events.sinks.append(sink)
