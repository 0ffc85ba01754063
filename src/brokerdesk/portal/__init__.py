"""The client portal (``/portal/``): sign-up hook, dashboard and the shared page context."""
