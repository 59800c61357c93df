import sys

from wawindow.cli import main

sys.exit(main())
