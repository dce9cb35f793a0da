"""`python -m tunesmith.cli ...`"""

import sys

from tunesmith.cli import main

sys.exit(main())
