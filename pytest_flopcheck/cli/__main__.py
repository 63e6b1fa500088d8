import sys

from pytest_flopcheck.cli.app import main

sys.exit(main())
