"""Lifecycle events out: CloudEvents made from what happened to an incident or a drill
(events) and sent, signed and retried, to each subscriber of webhooks.yaml (sender)."""
