"""Logging for the example portal: one JSON event per line to a file, readable console lines.

census emits structlog events and never configures logging; this is one way a project can.
structlog events and plain stdlib records (Django-Q2's ``django-q`` logger, Django's own) go
through the same ``ProcessorFormatter``, so the file holds one JSON object per line whatever
the source. Several processes (the web server, every qcluster process) append to one file:
each record is a single ``write()`` in append mode, so lines do not interleave.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import structlog
from structlog.typing import EventDict, WrappedLogger

from census.logs import scrub_cedula


def add_pid(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Which process wrote the line: the web server, the qcluster parent, a worker, the monitor."""
    event_dict.setdefault("pid", os.getpid())
    return event_dict


#: Run on every record, structlog's or stdlib's, before it is rendered.
PRE_CHAIN: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    add_pid,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


#: Run on every stdlib record (Django's, Django-Q2's, the portal's own): the same, then its
#: traceback rendered and the cédulas census has in scope masked (a follow-up's or a
#: receiver's lines name the member).
FOREIGN_PRE_CHAIN: list[Any] = [*PRE_CHAIN, scrub_cedula]


def configure_structlog() -> None:
    """Route structlog through the stdlib handlers configured by ``logging_config``."""
    structlog.configure(
        processors=[
            *PRE_CHAIN,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            # Tracebacks rendered here and masked: a KeyError may carry a cédula.
            scrub_cedula,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def logging_config(log_file: Path, *, console_level: str = "INFO") -> dict[str, Any]:
    """A ``LOGGING`` dict: JSON lines to ``log_file`` (INFO and up), console at the level given."""
    # Private when created here (the default is $PORTAL_VAR_DIR, already 0700).
    log_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    remove_meta = structlog.stdlib.ProcessorFormatter.remove_processors_meta
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {
                "()": structlog.stdlib.ProcessorFormatter,
                "foreign_pre_chain": FOREIGN_PRE_CHAIN,
                "processors": [
                    remove_meta,
                    structlog.processors.dict_tracebacks,
                    structlog.processors.JSONRenderer(ensure_ascii=False),
                ],
            },
            "console": {
                "()": structlog.stdlib.ProcessorFormatter,
                "foreign_pre_chain": FOREIGN_PRE_CHAIN,
                "processors": [
                    remove_meta,
                    structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()),
                ],
            },
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "console",
                "level": console_level,
            },
            "json_file": {
                # Watched: reopens the file after logrotate moves it.
                "class": "logging.handlers.WatchedFileHandler",
                "filename": str(log_file),
                "encoding": "utf-8",
                "formatter": "json",
                "level": "INFO",
            },
        },
        "root": {"handlers": ["console", "json_file"], "level": "INFO"},
        "loggers": {
            # Django-Q2 adds its own plain handler unless one is already reachable; with
            # propagation to the root its lines become JSON events like ours.
            "django-q": {"level": "INFO", "propagate": True},
            "census": {"level": "INFO", "propagate": True},
        },
    }
