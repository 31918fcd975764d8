"""Billing settings (nested under ``MAILCAM_BILLING__*``): Stripe keys, prices and the grace period.

Billing is on when the API key, the webhook secret and at least one price are set; otherwise the
dashboard hides "Upgrade to premium", the billing routes answer 404 ``billing_disabled``, and tiers
change only through ``mailcam set-tier``.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr


class BillingSettings(BaseModel):
    stripe_api_key: SecretStr | None = Field(default=None, description="sk_live_… / sk_test_… (or a restricted key)")
    stripe_webhook_secret: SecretStr | None = Field(default=None, description="whsec_… of the webhook endpoint")
    stripe_price_monthly: str | None = Field(default=None, description="price_… of the monthly premium plan")
    stripe_price_yearly: str | None = Field(default=None, description="price_… of the yearly premium plan")
    stripe_api_base: str | None = Field(default=None, description="replaces https://api.stripe.com (tests, a proxy)")
    stripe_timeout_s: float = 15.0
    # Stripe's events are larger than the app's other bodies (an invoice lists its lines).
    webhook_max_bytes: int = Field(default=512 * 1024, ge=1024)
    # A webhook whose signed timestamp is older than this is refused as a replay (the SDK's check).
    webhook_tolerance_s: int = Field(default=300, ge=1)
    # After a renewal payment fails (past_due) premium goes on this long while Stripe retries the card.
    grace_days: float = Field(default=7.0, ge=0)

    @property
    def prices(self) -> dict[str, str]:
        """The plans on sale: ``{"monthly": price id, "yearly": price id}`` (only those configured)."""
        plans = {"monthly": self.stripe_price_monthly, "yearly": self.stripe_price_yearly}
        return {plan: price for plan, price in plans.items() if price}

    @property
    def enabled(self) -> bool:
        return bool(self.stripe_api_key and self.stripe_webhook_secret and self.prices)
