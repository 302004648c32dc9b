from django.db import migrations


def sync(apps, schema_editor):
    from actions.sync import sync_catalog

    sync_catalog(apps.get_model("actions", "ResponseAction"))


class Migration(migrations.Migration):
    dependencies = [("actions", "0001_initial")]

    operations = [migrations.RunPython(sync, migrations.RunPython.noop)]
