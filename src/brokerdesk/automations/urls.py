"""Pages of automations, in the back office under /backoffice/automations/."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from brokerdesk.automations import views

app_name = "automations"
_B = "backoffice/automations/"
urlpatterns: list[URLPattern | URLResolver] = [
    path(_B, views.rule_list, name="rules"),
    path(f"{_B}new/", views.rule_new, name="rule_new"),
    path(f"{_B}editor/condition/", views.editor_condition, name="editor_condition"),
    path(f"{_B}editor/action/", views.editor_action, name="editor_action"),
    path(f"{_B}editor/fields/", views.editor_fields, name="editor_fields"),
    path(f"{_B}runs/", views.run_list, name="runs"),
    path(f"{_B}exceptions/", views.exception_list, name="exceptions"),
    path(f"{_B}runs/<uuid:run_id>/", views.run_detail, name="run"),
    path(f"{_B}runs/<uuid:run_id>/retry/", views.run_retry, name="run_retry"),
    path(f"{_B}runs/<uuid:run_id>/handle/", views.run_handle, name="run_handle"),
    path(f"{_B}<uuid:rule_id>/", views.rule_detail, name="rule"),
    path(f"{_B}<uuid:rule_id>/toggle/", views.rule_toggle, name="rule_toggle"),
]
