import sys

from xstilts_tui.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
