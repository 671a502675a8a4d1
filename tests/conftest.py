"""Shared test settings.

One torch thread: the tests train tiny networks, where a second thread adds
synchronisation cost, and CI machines (2 cores) run pytest beside other work;
results do not depend on the thread count.
"""

import os

os.environ.setdefault("RESBUILDER_SMOKE", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
