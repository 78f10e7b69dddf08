"""Django integration: add ``"que_core.contrib.django"`` to ``INSTALLED_APPS``.

* ``manage.py migrate`` creates the que-core schema (migration ``que.0001``
  runs que-core's own migrations);
* ``MyJob.enqueue(...)`` with no ``conn`` uses Django's connection, so inside
  ``transaction.atomic()`` the job commits or rolls back with the block;
* ``manage.py que_work`` runs a worker with Django set up;
* ``que_core.contrib.django.tasks.QueTaskBackend``: a backend for Django's
  Tasks framework (``django.tasks``, or the ``django-tasks`` backport);
* ``que_core.contrib.django.mail.EmailBackend``: sends each email in a job.

Settings live in ``QUE = {...}`` (see :mod:`que_core.contrib.django.conf`).
Importing this package does not import Django.
"""
