"""The IB (partner) portal (``/partners/``)."""
