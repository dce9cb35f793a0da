"""`python -m tunesmith ...` (the form launchers take: `accelerate launch -m tunesmith train RECIPE`,
`torchrun --nproc_per_node 2 -m tunesmith train RECIPE`)."""

import sys

from tunesmith.allocator import run_under_preferred_allocator

run_under_preferred_allocator()  # tcmalloc where installed (tunesmith/allocator.py)

from tunesmith.cli import main  # noqa: E402

sys.exit(main())
