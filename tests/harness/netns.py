"""Test-side name for pqike.netns (the demo and the benchmarks use the same topologies)."""

from pqike.netns import *  # noqa: F403
from pqike.netns import _ifindex  # noqa: F401
