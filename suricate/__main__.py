"""``python -m suricate`` and the ``suricate`` command (pyproject's entry point).

Python's cyclic garbage collector is off while the program imports and the server starts: some
60 collections would walk objects that all live on (modules, classes, the configuration),
about 8 ms of start-up. ``suricate.cli.main`` turns it back on: for ``serve`` once the server
listens, after moving what start-up made out of its reach (``gc.freeze``: later full
collections do not walk it again); for every other command at once.
"""

import gc
import sys


def run() -> int:
    gc.disable()
    from suricate.cli.main import main

    return main()


if __name__ == "__main__":
    sys.exit(run())
