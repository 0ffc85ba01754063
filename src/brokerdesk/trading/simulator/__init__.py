"""``brokerdesk simulator mt5``: an MT5-faithful trade server for the demo and the tests."""
