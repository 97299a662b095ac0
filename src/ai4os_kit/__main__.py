import sys

from ai4os_kit.cli import main

sys.exit(main())
