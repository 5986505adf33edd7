"""Every screen's command-line twin: what a technician runs in a script or an SSH session to do what a key
does on a screen (README: "every screen has a command-line twin").

:data:`TWINS` maps each screen class name to its actions (a binding's action, without ``action_``) and
the ``fieldtui`` subcommand, with the flag that does it when one is needed, that does the same.
:data:`NAVIGATION` lists the actions that only move around the console or change what it shows (back,
quit, help, a filter, the camera view): nothing on a device to do from a command line.
tests/test_palette_twins.py walks every screen's bindings against this table and the table against the
CLI's parser, so a new key without a twin, or a twin that does not exist, fails the suite.
"""

from __future__ import annotations

NAVIGATION = frozenset(
    {
        "app.pop_screen",
        "back",
        "app.quit",
        "quit",
        "help",
        "command_palette",
        "cancel",  # a dialog's escape
        "answer",  # a confirmation's yes / no
        "dismiss",  # help's close
        "clear_filter",
        "toggle_camera",  # show or hide the annotated frame on the dashboard
        "next_camera",  # which camera the dashboard's panels show
        "prev_camera",
        "pick",  # the camera grid: show this camera's panels
        "dismiss_grid",
        "app.focus_next",
        "app.focus_previous",
        "zoom_camera",  # the camera view on the whole screen
        "cursor",  # j/k in a list, table, tree or log
    }
)

TWINS: dict[str, dict[str, str]] = {
    "DevicesScreen": {
        "open": "status",
        "filter": "discover",  # the list itself; grep it
        "add": "add",
        "pair": "pair",
        "forget": "forget",
        "probe_subnet": "discover --probe",
        "write_report": "report",
        "refresh": "discover",
        "mark": "rollout --devices",  # the marked devices are the rollout's
        "rollout": "rollout",
    },
    "RolloutScreen": {
        "pause": "rollout --resume",  # ctrl-c on `fieldtui rollout` pauses it (saved); --resume goes on
        "abort": "rollout --abort",
    },
    "DashboardScreen": {
        "logs": "logs",
        "restart": "restart",
        "source": "source",
        "models": "models",
        "trio": "trio",
        "benchmark": "bench",
        "engines": "engines",
        "over_ssh": "status --ssh",
        "how_to_pair": "pair",
        "camera_grid": "cameras",  # every camera's state; its snapshot is GET /v1/cameras/NAME/snapshot.jpg
    },
    "ModelsScreen": {
        "push": "push",
        "activate": "activate",
        "rollback": "rollback",
        "delete": "delete",
        "reload": "models",
    },
    "BenchmarkScreen": {
        "run": "bench",
        "cancel": "bench",  # ctrl-c on `fieldtui bench` cancels the job on the device
        "reload": "report",  # the visit report lists the past runs, each compared with the one before
    },
    "EnginesScreen": {
        "rebuild": "rebuild",
        "reload": "engines",
        "cancel": "rebuild",  # ctrl-c on `fieldtui rebuild` cancels the build on the device
    },
    "TrioScreen": {
        "test": "trio-test",
        "configure": "trio --endpoint",
        "edit_rules": "trio --rules",
        "reload": "trio",
    },
    "LogsScreen": {
        "search": "logs",  # piped to grep
        "cycle_level": "logs",
        "follow": "logs --follow",
    },
}
