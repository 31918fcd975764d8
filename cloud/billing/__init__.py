"""Premium by Stripe subscription: Checkout to buy, the customer portal to manage, webhooks to decide.

    config.py       MAILCAM_BILLING__* settings; billing is off unless Stripe is configured
    stripe_api.py   the only module that calls the stripe SDK (sessions, signature checks)
    entitlement.py  subscription status → tier and until when (pure)
    webhooks.py     verified events → the Subscription row, each event id once
    service.py      what the routes need: the dashboard's billing summary, checkout and portal URLs

The tier itself stays where it was (``Subscription.tier``/``ends_at``, read by
``accounts.effective_tier``): the click limits know nothing of Stripe.
"""
