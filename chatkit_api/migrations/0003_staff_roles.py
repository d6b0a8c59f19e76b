"""Two staff roles for the transcript admin: readers, and operators who may also resend.

Permissions are normally created after all migrations have run; the ones the groups need
are created here if they do not exist yet (a fresh database), with Django's own names.
"""

from django.db import migrations

READER_PERMISSIONS = [
    ("transcript", "view_transcript", "Can view transcript"),
    ("transcriptemail", "view_transcriptemail", "Can view transcript email"),
]
OPERATOR_PERMISSIONS = [*READER_PERMISSIONS, ("transcript", "resend_transcript", "Can resend transcripts")]
ROLES = {"Transcript readers": READER_PERMISSIONS, "Transcript operators": OPERATOR_PERMISSIONS}


def create_roles(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    for group_name, permissions in ROLES.items():
        group, _ = Group.objects.get_or_create(name=group_name)
        for model, codename, name in permissions:
            content_type, _ = ContentType.objects.get_or_create(app_label="chatkit_api", model=model)
            permission, _ = Permission.objects.get_or_create(
                content_type=content_type, codename=codename, defaults={"name": name}
            )
            group.permissions.add(permission)


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("chatkit_api", "0002_delivery_reports"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
