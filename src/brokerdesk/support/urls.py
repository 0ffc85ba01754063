"""Pages of support, mounted at the site root: the client's Support under /portal/support/,
the staff Tickets under /backoffice/tickets/."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from brokerdesk.support import views

app_name = "support"
urlpatterns: list[URLPattern | URLResolver] = [
    path("portal/support/", views.portal_tickets, name="portal_tickets"),
    path("portal/support/new/", views.portal_new, name="portal_new"),
    path("portal/support/<uuid:ticket_id>/", views.portal_ticket, name="portal_ticket"),
    path(
        "portal/support/attachments/<uuid:attachment_id>/",
        views.portal_attachment,
        name="portal_attachment",
    ),
    path("backoffice/tickets/", views.staff_tickets, name="tickets"),
    path("backoffice/tickets/new/", views.staff_new, name="staff_new"),
    path("backoffice/tickets/figures/", views.staff_figures, name="figures"),
    path("backoffice/tickets/<uuid:ticket_id>/", views.staff_ticket, name="ticket"),
    path(
        "backoffice/tickets/<uuid:ticket_id>/<slug:action>/",
        views.staff_action,
        name="ticket_action",
    ),
    path(
        "backoffice/tickets/attachments/<uuid:attachment_id>/",
        views.staff_attachment,
        name="attachment",
    ),
]
