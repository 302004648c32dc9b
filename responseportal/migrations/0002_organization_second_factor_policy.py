from django.db import migrations, models


class Migration(migrations.Migration):
    """Organizations that existed before keep working as they did (the database's default: no
    requirement); new ones require a second factor of their admins (the model's default)."""

    dependencies = [("responseportal", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="organization",
            name="second_factor_policy",
            field=models.CharField(
                choices=[
                    ("none", "Not required"),
                    ("admins", "Required for admins"),
                    ("everyone", "Required for every member"),
                ],
                db_default="none",
                default="admins",
                max_length=10,
            ),
        ),
    ]
