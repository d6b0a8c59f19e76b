"""A claim on each transcript's send, taken before anything is read or mailed.

Transcripts still `pending` when this runs were claimed, in effect, at their last change:
that is how old `resend_transcript --failed` took them to be until now.
"""

from django.db import migrations, models


def claim_pending(apps, schema_editor):
    Transcript = apps.get_model("chatkit_api", "Transcript")
    Transcript.objects.filter(status="pending").update(sending_since=models.F("updated_at"))


class Migration(migrations.Migration):

    dependencies = [
        ('chatkit_api', '0009_thread_runs'),
    ]

    operations = [
        migrations.AddField(
            model_name='transcript',
            name='sending_since',
            field=models.DateTimeField(blank=True, help_text='A send claimed the transcript then and has not finished. A claim older than TRANSCRIPT_PENDING_TIMEOUT_MINUTES belongs to a process that died, and the next send takes it over.', null=True),
        ),
        migrations.RunPython(claim_pending, migrations.RunPython.noop),
    ]
