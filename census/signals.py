"""The signals census sends: connect to them to act on a lookup's changes.

Both are sent with ``sender=CedulaInfo``, **after** the transaction that made the change has
committed (never for a rolled-back change), in the process that made it: a qcluster worker
for attempts, its census ticker thread for what the sweeper moves, the web process for a
registration or a refresh. They are sent with ``send_robust``: a receiver that raises is
logged (``receiver_failed``, with its traceback, the cédula masked) and neither undoes the
change nor keeps the other receivers from running. A slow receiver delays that process (the
worker's next attempt): for slow work, or work that must not be lost, use a follow-up
(``CENSUS_FOLLOW_UPS``, ``census.followups``).

Delivery is at most once per change: the change is committed before it is announced, so a
process killed between the commit and the sending loses that signal (and its log line); the
lookup's row, and a follow-up chain, are right all the same.
"""

from __future__ import annotations

from django.dispatch import Signal

#: Every committed status change, with the event's fields as keyword arguments:
#: ``lookup`` (the ``CedulaInfo``), ``lookup_id``, ``user_id``, ``step``, ``retry_count``,
#: ``from_status`` (None when the lookup is created), ``to_status``, and the change's own
#: details (``delay_s``, ``due_at``, ``deferred``; ``reason``, ``exhausted``, ``age_s``;
#: ``requested_by``), as in the ``lookup_status_changed`` event.
lookup_status_changed = Signal()

#: A final status was reached: ``lookup``, ``lookup_id``, ``user_id``, ``status`` (found,
#: not_found, cancelled or error), ``reason`` (the outcome that ended it, or what the answer's
#: wording said beyond it: ``census.outcomes.AnswerReason``), ``previous_result``
#: (the result before a refresh or re-check, None on a first lookup) and ``changed`` (True
#: when there was a previous census answer and this one differs from it).
lookup_finished = Signal()
