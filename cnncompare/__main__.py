import sys

from cnncompare.cli import main

if __name__ == "__main__":
    sys.exit(main())
