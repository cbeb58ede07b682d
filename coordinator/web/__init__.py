"""HTTP surface: the JSON API (api.py) and, later, provider webhooks and the console."""
