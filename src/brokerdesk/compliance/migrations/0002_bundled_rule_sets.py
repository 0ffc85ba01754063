"""Store the bundled jurisdiction rule sets (CySEC-like, Seychelles-FSA-like, Bahamas-SCB-like)."""

from typing import Any

from django.db import migrations
from django.utils import timezone


def load(apps: Any, schema_editor: Any) -> None:
    from brokerdesk.compliance import rules

    RuleSet = apps.get_model("compliance", "RuleSet")
    for data in rules.bundled():
        parsed = rules.parse(data)
        RuleSet.objects.get_or_create(
            jurisdiction=parsed.jurisdiction,
            version=parsed.version,
            defaults={
                "name": parsed.name,
                "effective_from": parsed.effective_from,
                "data": data,
                "checksum": parsed.checksum,
                "loaded_at": timezone.now(),
                "loaded_by": "migration:0002_bundled_rule_sets",
            },
        )


class Migration(migrations.Migration):
    dependencies = [("compliance", "0001_initial")]

    operations = [migrations.RunPython(load, migrations.RunPython.noop)]
