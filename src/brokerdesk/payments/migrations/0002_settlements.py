"""Settled payments move from a column on the payment rows to an insert-only table."""

from typing import Any

from django.db import migrations, models


def copy_batches(apps: Any, schema_editor: Any) -> None:
    """Every payment already marked settled becomes a ``Settlement`` row."""
    settlement = apps.get_model("payments", "Settlement")
    for kind, name in (("deposit", "Deposit"), ("withdrawal", "Withdrawal")):
        model = apps.get_model("payments", name)
        rows = model.objects.exclude(settlement_batch="").values_list(
            "id", "settlement_batch", "updated_at"
        )
        settlement.objects.bulk_create(
            [
                settlement(payment_type=kind, payment_id=pk, batch=batch, created_at=at)
                for pk, batch, at in rows.iterator()
            ],
            batch_size=5000,
        )


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="Settlement",
            fields=[
                ("payment_id", models.UUIDField(primary_key=True, serialize=False)),
                ("payment_type", models.CharField(max_length=20)),
                ("batch", models.CharField(max_length=64)),
                ("run_id", models.UUIDField(null=True)),
                ("created_at", models.DateTimeField()),
            ],
        ),
        migrations.RunPython(copy_batches, migrations.RunPython.noop),
        migrations.RemoveField(
            model_name="deposit",
            name="settlement_batch",
        ),
        migrations.RemoveField(
            model_name="withdrawal",
            name="settlement_batch",
        ),
    ]
