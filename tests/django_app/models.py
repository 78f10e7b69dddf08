from django.db import models


class Event(models.Model):
    """What the test jobs and tasks did."""

    name = models.CharField(max_length=200)
    backend_pid = models.IntegerField(null=True)
    thread = models.CharField(max_length=200, default="")

    class Meta:
        app_label = "django_app"
