"""Everything census does with Django-Q2: ``queue`` (every ``async_task`` and ``schedule``
call, task names, what is queued), ``hooks`` (the result hook), ``context`` (the running
task's id). The sweeper, the ticker and stats read Django-Q2's rows; nothing else in census
touches Django-Q2."""
