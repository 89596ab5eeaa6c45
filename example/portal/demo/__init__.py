"""The pieces of ``manage.py census_demo``: the member mix, processes, progress, summary."""
