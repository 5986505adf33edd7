"""FAKE ``cuda.cudart`` (cuda-python < 12.6 spelling), for tests only: the same fake runtime."""

from cuda.bindings.runtime import *  # noqa: F403
from cuda.bindings.runtime import __all__  # noqa: F401
