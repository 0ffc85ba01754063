"""Django app configuration for clients."""

from django.apps import AppConfig


class ClientsConfig(AppConfig):
    """The clients app."""

    name = "brokerdesk.clients"
    label = "clients"
    verbose_name = "Clients"
