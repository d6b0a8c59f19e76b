"""PostgreSQL: the rate-limit counters skip the write-ahead log.

A counter is bumped on every session call; in a logged table each bump waits for its
commit to reach the disk, half a millisecond or more on PostgreSQL next to the service. An
unlogged table is emptied after a server crash, which only restarts the current windows.
"""

from django.db import migrations


def _persistence(keyword):
    def operation(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        table = apps.get_model("chatkit_api", "RateLimitCounter")._meta.db_table
        schema_editor.execute(f"ALTER TABLE {schema_editor.quote_name(table)} SET {keyword}")

    return operation


class Migration(migrations.Migration):
    dependencies = [
        ("chatkit_api", "0006_rate_limit_counters"),
    ]

    operations = [
        migrations.RunPython(_persistence("UNLOGGED"), reverse_code=_persistence("LOGGED")),
    ]
