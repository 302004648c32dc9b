from django.db import migrations, models

CHOICES = [
    ("none", "Not required"),
    ("admins", "Required for admins"),
    ("everyone", "Required for every member"),
]


class Migration(migrations.Migration):
    """Organizations that existed before keep working as they did (no requirement); new ones
    require a second factor of their admins."""

    dependencies = [("responseportal", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="organization",
            name="second_factor_policy",
            field=models.CharField(choices=CHOICES, default="none", max_length=10),
        ),
        migrations.AlterField(
            model_name="organization",
            name="second_factor_policy",
            field=models.CharField(choices=CHOICES, default="admins", max_length=10),
        ),
    ]
