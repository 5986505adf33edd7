"""Choose a model file to push: a directory tree showing only .onnx/.engine/.hef/.tflite, a path, a version.

Dismissed with a :class:`PushRequest` (None on escape). The version is suggested from the file name and
checked with the push service's own rule before the dialog closes, so a typo never starts a hash.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DirectoryTree, Input, Static

from fieldtui.push import FORMATS, valid_version
from screens.widgets.toggles import Checkbox


@dataclass(frozen=True)
class PushRequest:
    path: Path
    version: str
    activate: bool


def tilde(path: Path) -> str:
    """``path`` as a technician would type it: ~/... under the home folder."""
    path = path.resolve()
    try:
        return "~/" + str(path.relative_to(Path.home().resolve()))
    except ValueError:
        return str(path)


def picked(dialog: ModalScreen, event: DirectoryTree.FileSelected, path_field: str) -> None:
    """A file picked in a dialog's tree: its path in ``path_field``, its name as the version when none
    is typed yet, and the focus on the version (the next thing to type)."""
    dialog.query_one(path_field, Input).value = tilde(Path(event.path))
    version = dialog.query_one("#version", Input)
    if not version.value:
        version.value = event.path.stem
    version.focus()


class ModelTree(DirectoryTree):
    """Folders and model files only (hidden entries left out); the root shown as ~/... under home."""

    def on_mount(self) -> None:
        self.root.set_label(tilde(Path(self.path)))

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        return [
            p for p in paths if not p.name.startswith(".") and (p.is_dir() or p.suffix.lower() in FORMATS)
        ]


class PushDialog(ModalScreen["PushRequest | None"]):
    CSS_PATH = "push_dialog.tcss"
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, start: Path | None = None) -> None:
        super().__init__()
        self.start = start or Path.cwd()

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text("Push a model file", style="bold"), classes="question")
            yield ModelTree(self.start, id="tree")
            yield Input(placeholder="path of a .onnx, .engine or .hef file (shift+tab: the tree)", id="path")
            yield Input(placeholder="version name, e.g. v8 or 2026.11.1", id="version")
            yield Checkbox("activate after the upload", True, id="activate")
            yield Static(id="error")
            with Horizontal(classes="buttons"):
                yield Button("Push (enter)", variant="primary", id="ok")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        # A technician who knows the path types it at once (nothing typed is lost to the tree);
        # shift+tab goes up to the tree to pick the file instead.
        self.query_one("#path").focus()

    @on(DirectoryTree.FileSelected)
    def _file(self, event: DirectoryTree.FileSelected) -> None:
        picked(self, event, "#path")

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def _submit(self, event: Input.Submitted | Button.Pressed) -> None:
        raw = self.query_one("#path", Input).value.strip()
        version = self.query_one("#version", Input).value.strip()
        from_path = isinstance(event, Input.Submitted) and event.input.id == "path"
        typed = Path(raw).expanduser() if raw else None
        if from_path and not version and typed is not None and typed.is_file():
            # a typed path is taken like a picked file: the version is suggested and asked next
            self.query_one("#version", Input).value = typed.stem
            self.query_one("#version", Input).focus()
            return
        error = self.query_one("#error", Static)
        path = typed
        if path is None or not path.is_file():
            error.update(
                Text(f"no such file: {raw}" if raw else "choose a file in the tree or type its path", "red")
            )
            return
        if path.suffix.lower() not in FORMATS:
            error.update(Text(f"{path.name}: a model is a .onnx, .engine, .hef or .tflite file", "red"))
            return
        if not valid_version(version):
            error.update(
                Text("version: 1-64 letters, digits, '.', '_', '-' or '+', like v8 or 2026.11.1", "red")
            )
            self.query_one("#version", Input).focus()
            return
        self.dismiss(PushRequest(path, version, self.query_one("#activate", Checkbox).value))

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)
