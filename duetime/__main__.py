import sys

from duetime.cli import main

sys.exit(main())
