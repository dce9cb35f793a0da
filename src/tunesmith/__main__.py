"""`python -m tunesmith ...` (the form launchers take: `accelerate launch -m tunesmith train RECIPE`,
`torchrun --nproc_per_node 2 -m tunesmith train RECIPE`)."""

import sys

from tunesmith.cli import main

sys.exit(main())
