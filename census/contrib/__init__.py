"""Integrations with other libraries, each optional and each in a module of its own:
``census.contrib.allauth`` (django-allauth's sign-up; the ``allauth`` extra)."""
