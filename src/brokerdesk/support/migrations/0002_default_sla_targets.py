"""Seed the SLA targets per priority with the defaults of ``support.states``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.db import migrations

DEFAULTS = {
    "urgent": (30, 4 * 60),
    "high": (2 * 60, 24 * 60),
    "normal": (8 * 60, 72 * 60),
    "low": (24 * 60, 120 * 60),
}


def seed(apps: Any, schema_editor: Any) -> None:
    """Create the rows that do not exist yet (never overwrite a changed target)."""
    SlaTarget = apps.get_model("support", "SlaTarget")
    now = datetime.now(UTC)
    for priority, (first, resolution) in DEFAULTS.items():
        SlaTarget.objects.get_or_create(
            priority=priority,
            defaults={
                "first_response_minutes": first,
                "resolution_minutes": resolution,
                "updated_at": now,
                "updated_by": "system:migration",
            },
        )


class Migration(migrations.Migration):
    dependencies = [("support", "0001_initial")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
