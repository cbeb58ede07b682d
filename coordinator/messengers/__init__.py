"""DingTalk and WeCom wired into the service: cards sent in the vendors' chunks (sending),
read state polled (reads), presses acknowledged (acks, links), built together (service)."""
