"""Stripe connector (Connect Standard accounts), active only with STRIPE_CONNECT_ENABLED.

Nothing here is imported by the Dagster definitions or the API while the flag is off.
"""
