"""Fan-out benchmark: the official script to 10,000 frontline staff by SMS and email
through the service's outbox, the real twilio client and the sandbox over loopback.
Run with `.venv/bin/python -m bench.fanout`; see bench/fanout/README.md."""
