"""What a Stripe subscription status grants: the tier and until when (pure; no database, no clock).

    active, trialing      → premium; open-ended, or until the period end when it cancels then
    past_due              → premium until the grace end (payment was due at the period start;
                            Stripe retries the card meanwhile), with a notice in the dashboard
    canceled, unpaid,     → premium until the end of what was paid for (the period end, or the
    incomplete_expired      grace end if payment had failed), then free; never premium if it was not
    anything else         → free (incomplete: the first payment is not done; paused)

``accounts.effective_tier`` turns the stored (tier, ends_at) into the tier at a given moment, so
"free at period end" needs no job: the click limit is back once ``ends_at`` has passed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cloud.models import Tier

PREMIUM_STATUSES = ("active", "trialing")
GRACE_STATUS = "past_due"
ENDED_STATUSES = ("canceled", "unpaid", "incomplete_expired")
LIVE_STATUSES = (*PREMIUM_STATUSES, GRACE_STATUS)  # a subscription that still bills: buy no second one


@dataclass(frozen=True)
class Grant:
    tier: Tier
    ends_at: datetime | None  # None: until Stripe says otherwise
    grace_until: datetime | None = None


def grant_for(
    status: str,
    *,
    period_start: datetime | None,
    period_end: datetime | None,
    cancel_at_period_end: bool,
    current: Grant,
    grace: timedelta,
    now: datetime,
) -> Grant:
    """The grant for a subscription now in ``status``, given what the user had (``current``)."""
    if status in PREMIUM_STATUSES:
        return Grant(Tier.PREMIUM, period_end if cancel_at_period_end else None)
    if status == GRACE_STATUS:
        # Counted once from when payment was due: later retries and events do not extend it.
        grace_until = current.grace_until or (period_start or now) + grace
        return Grant(Tier.PREMIUM, grace_until, grace_until)
    if status in ENDED_STATUSES and current.tier == Tier.PREMIUM:
        end = current.grace_until or period_end or now
        if current.ends_at is not None:
            end = min(end, current.ends_at)
        return Grant(Tier.PREMIUM, end, current.grace_until)
    return Grant(Tier.FREE, None)
