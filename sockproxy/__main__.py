import sys

from sockproxy.cli import main

sys.exit(main())
