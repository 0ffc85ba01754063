"""In-repo fakes of the MT5Manager package and of an MT4 manager binding.

Both run the simulator engine behind the interface.
"""
