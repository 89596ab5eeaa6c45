"""The life of one lookup, a module per step:

- ``start``: a new user's lookup is created (``pending``) and its first attempt queued once
  the registration commits;
- ``attempt``: the Django-Q2 task claims the attempt (``scraping``), runs the scraper
  through the gate, and writes the attempt's report (``report``) to its ``Attempt`` row;
- ``conclude``: the result hook (or the sweeper) applies the retry ``policy`` (pure) to that
  report: a final status, a retry scheduled on the ladder (``retrying``), or a deferral
  behind the closed gate;
- ``status``: the one writer of ``CedulaInfo.status``, which checks every move; ``announce``
  logs and signals each committed change; ``results`` says what a result is and what changed;
- ``refresh``: a leader starts a fresh attempt budget for a finished lookup.
"""
