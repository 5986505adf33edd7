"""fieldtui-agent: the headless on-device agent (camera -> detector loop, control API, model store).

One subpackage per concern, so a feature is found from the folder name:

- ``core/``        errors, fault points, config and its cameras, the home and its one ``atomic_write``, the
                   state database, jobs, events, the log buffer
- ``inference/``   detector, preprocess, postprocess, export metadata, precision, agreement, ``backends/``
                   (one module per runtime, each importing its SDK inside)
- ``frames/``      pipeline, the thread policy, capture, the latest-frame slot, stats, camera health,
                   metrics, snapshots, ``sources/``; several cameras on one detector: multicam,
                   camera_lane, cameraset, camera_metrics
- ``store/``       model store, uploads, catalog, history, settings, activation, probation, reconcile,
                   registry pull
- ``engines/``     engine store, builds, jobs, fingerprints, quantisation
- ``bench/``       benchmark runner, frames, history, jobs, probes
- ``forwarding/``  Trio forwarding, its store, the Trio client, redaction
- ``server/``      the FastAPI app, service wiring, the one health verdict, device info, mDNS, sd_notify, TLS,
                   auth, ``api/`` routes
- ``cli/``         ``fieldtui-agent`` subcommands and the headless ``run``

The agent imports nothing of the console but ``fieldtui.protocol`` (the wire models, the version, the
class palette); ``tests/test_layout.py`` checks that and that no modules import each other in a circle.
"""

from fieldtui.protocol import __version__

__all__ = ["__version__"]
