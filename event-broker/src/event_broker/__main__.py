"""`python -m event_broker`: see `event_broker.app`."""

import sys

from event_broker.app import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
