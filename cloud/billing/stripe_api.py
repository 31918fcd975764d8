"""The one place that talks to the ``stripe`` SDK: Checkout, the customer portal, webhook verification.

Calls go through a ``StripeClient`` built from the settings (``base_addresses={"api": …}`` points it
at ``MAILCAM_BILLING__STRIPE_API_BASE``, e.g. a local fake in tests). The SDK's errors are
translated here:

    stripe.SignatureVerificationError, bad JSON  → BadWebhook        (400 bad_webhook)
    stripe.InvalidRequestError (our request)     → ServiceUnavailable (503; the settings are wrong)
    any other stripe.StripeError (network, auth) → ServiceUnavailable (503; try again)
"""

from __future__ import annotations

import json
import logging
from typing import Any

import stripe

from cloud.billing.config import BillingSettings
from cloud.errors import MailcamError, ServiceUnavailable

log = logging.getLogger("mailcam.billing")


class BadWebhook(MailcamError):
    status_code = 400
    code = "bad_webhook"


class StripeApi:
    """Checkout and portal sessions, and verified webhook events, for one set of billing settings."""

    def __init__(self, settings: BillingSettings) -> None:
        if not settings.enabled:
            raise ValueError("billing is not configured (API key, webhook secret and a price are needed)")
        self.settings = settings
        base = {"api": settings.stripe_api_base.rstrip("/")} if settings.stripe_api_base else None
        self.client = stripe.StripeClient(
            settings.stripe_api_key.get_secret_value(),
            base_addresses=base,
            # The SDK's own default (requests); its httpx client passes raw bodies in a way httpx deprecates.
            http_client=stripe.RequestsClient(timeout=settings.stripe_timeout_s),
            max_network_retries=1,
        )

    def checkout_url(
        self,
        *,
        plan: str,
        user_id: int,
        email: str,
        customer_id: str | None,
        success_url: str,
        cancel_url: str,
    ) -> str:
        """A Stripe Checkout session for the plan's price; the URL to send the browser to."""
        params: dict[str, Any] = {
            "mode": "subscription",
            "line_items": [{"price": self.settings.prices[plan], "quantity": 1}],
            "client_reference_id": str(user_id),
            "success_url": success_url,
            "cancel_url": cancel_url,
            # The subscription carries the user too: its events may arrive before checkout.session.completed.
            "subscription_data": {"metadata": {"mailcam_user_id": str(user_id)}},
            "metadata": {"mailcam_user_id": str(user_id)},
        }
        if customer_id:  # a returning customer keeps one Stripe customer (and card, invoices)
            params["customer"] = customer_id
        else:
            params["customer_email"] = email
        session = self._call("create a Checkout session", self.client.v1.checkout.sessions.create, params)
        return session.url

    def portal_url(self, *, customer_id: str, return_url: str) -> str:
        """A customer-portal session (change card or plan, cancel); the URL to send the browser to."""
        params = {"customer": customer_id, "return_url": return_url}
        session = self._call("open the customer portal", self.client.v1.billing_portal.sessions.create, params)
        return session.url

    def verified_event(self, payload: bytes, signature: str | None) -> dict[str, Any]:
        """The event in ``payload`` once its ``Stripe-Signature`` is valid and recent (the SDK checks both)."""
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadWebhook("the webhook body is not UTF-8") from exc
        secret = self.settings.stripe_webhook_secret.get_secret_value()
        try:
            stripe.Webhook.construct_event(text, signature, secret, tolerance=self.settings.webhook_tolerance_s)
        except stripe.SignatureVerificationError as exc:
            raise BadWebhook(f"the Stripe-Signature is not valid: {exc.user_message or exc}") from exc
        except (ValueError, AttributeError) as exc:  # signed, but not a JSON object (json.loads, .get)
            raise BadWebhook("the webhook body is not a Stripe event") from exc
        # Verified: the text as plain JSON (not the SDK's Event object), for webhooks.py to validate.
        return json.loads(text)

    def _call(self, what: str, method: Any, params: dict[str, Any]) -> Any:
        try:
            return method(params)
        except stripe.InvalidRequestError as exc:
            log.error("Stripe refused to %s: %s", what, exc.user_message or exc)
            raise ServiceUnavailable(f"could not {what}: payments are misconfigured") from exc
        except stripe.StripeError as exc:
            log.warning("could not %s: %s", what, exc.user_message or exc)
            raise ServiceUnavailable(f"could not {what}; please try again") from exc
