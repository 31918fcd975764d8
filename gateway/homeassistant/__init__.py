"""Home Assistant: each mailbox appears there by itself, through MQTT discovery from the gateway.

``discovery`` holds the topics and config payloads (pure); ``bridge`` runs them against the broker
and the cloud. Turned on by ``MAILCAM_GATEWAY_HOMEASSISTANT=true``; see docs/home-assistant.md.
"""
