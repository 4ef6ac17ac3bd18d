"""How ``suricate serve`` writes its log: standard error, one line per event, no colours.

On a terminal, or into a file or a pipe, each line is ``<time> <LEVEL> <logger> <event>
key=value ...``. Under systemd, when standard error is the journal (systemd.exec(5):
``$JOURNAL_STREAM`` holds the ``device:inode`` of that stream, compared with standard error's
own so that a program whose output was redirected elsewhere is not fooled), the journal stamps
each line itself: the time is left out and each line starts with its syslog priority,
``<4>`` for a warning (sd-daemon(3)), so ``journalctl -p warning`` selects by level. A
traceback's lines carry its record's priority too: journald keeps each line as an entry, and
every one of them belongs to the error.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

#: Python level -> syslog priority (sd-daemon(3): SD_ERR "<3>", SD_WARNING "<4>", ...).
_PRIORITY = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4),
             (logging.INFO, 6), (logging.DEBUG, 7))

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
JOURNAL_FORMAT = "%(levelname)s %(name)s %(message)s"


def priority(levelno: int) -> int:
    for level, prio in _PRIORITY:
        if levelno >= level:
            return prio
    return 7


class JournalFormatter(logging.Formatter):
    """Every line of a record (a traceback's too) prefixed with the record's priority."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).split("\n"))


def writes_to_journal(stream: TextIO) -> bool:
    """True when ``stream`` is the journal stream systemd connected (``$JOURNAL_STREAM``)."""
    expected = os.environ.get("JOURNAL_STREAM")
    if not expected:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError):
        return False
    return expected == f"{st.st_dev}:{st.st_ino}"


def setup_logging(level: int, stream: TextIO | None = None) -> logging.Handler:
    """The root logger's one handler, to ``stream`` (standard error). As
    `logging.basicConfig`, nothing is done when the root logger has a handler already (a
    test's, or a second call in one process)."""
    root = logging.getLogger()
    if root.handlers:
        return root.handlers[0]
    stream = stream if stream is not None else sys.stderr
    handler = logging.StreamHandler(stream)
    if writes_to_journal(stream):
        handler.setFormatter(JournalFormatter(JOURNAL_FORMAT))
    else:
        handler.setFormatter(logging.Formatter(PLAIN_FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
    return handler
