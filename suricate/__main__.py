import sys

from suricate.cli.main import main

sys.exit(main())
