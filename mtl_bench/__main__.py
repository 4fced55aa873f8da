import sys

from mtl_bench.cli import main

sys.exit(main())
