"""All ORM models; importing this package registers every table on ``Base.metadata``."""

from cloud.models.base import Base, UTCDateTime
from cloud.models.core import (
    Analysis,
    AnalysisJob,
    AuthToken,
    Capture,
    ClickUsage,
    Device,
    Gateway,
    JobRun,
    JobStatus,
    ManualTrigger,
    Subscription,
    Telemetry,
    Tier,
    TriggerStatus,
    TriggerType,
    User,
)

__all__ = [
    "Analysis",
    "AnalysisJob",
    "AuthToken",
    "Base",
    "Capture",
    "ClickUsage",
    "Device",
    "Gateway",
    "JobRun",
    "JobStatus",
    "ManualTrigger",
    "Subscription",
    "Telemetry",
    "Tier",
    "TriggerStatus",
    "TriggerType",
    "User",
    "UTCDateTime",
]
