"""The audit sink port (port.py) and its adapter: a JSON webhook (webhook.py)."""
