"""FAKE ``cuda`` package (cuda-python) for tests only: not NVIDIA's code, no GPU involved.

Put ``tests/fakes`` on ``sys.path`` for one test (``monkeypatch.syspath_prepend``) and ``cuda.bindings.runtime``
(and the older ``cuda.cudart`` spelling) resolve to :mod:`cuda.bindings.runtime` here, which keeps
"device memory" in host memory so the fake TensorRT can compute real outputs.
"""
