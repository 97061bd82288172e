import sys

from telesales.cli import main

sys.exit(main())
