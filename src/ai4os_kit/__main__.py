from ai4os_kit.cli import main
import sys
sys.exit(main())
