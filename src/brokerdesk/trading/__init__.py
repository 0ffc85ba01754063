"""Trading: the platform port and adapters, the MT5-faithful simulator and the bridge."""
