"""A benchmark run at a glance: per configuration, a bar of milliseconds per frame and a bar of frames per
second, each scaled to the largest in the run, so the fastest configuration stands out in both."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from fieldtui.protocol import BenchmarkConfig, BenchmarkResult
from screens.widgets.bars import bar


def config_label(c: BenchmarkConfig) -> str:
    """``onnxruntime int8 t4 b8``: threads ``t-`` when the runtime chose them, ``tn/a`` where the
    backend has no thread knob."""
    threads = "n/a" if not c.threads_apply else c.threads or "-"
    return f"{c.backend} {c.precision} t{threads} b{c.batch}"


class ConfigBars(Static):
    """``bars.show(results)``; skipped and failed configurations are listed with their status."""

    DEFAULT_CSS = """
    ConfigBars { height: auto; }
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.results: list[BenchmarkResult] = []

    def show(self, results: list[BenchmarkResult]) -> None:
        self.results = list(results)
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def _draw(self) -> None:
        if not self.results:
            self.update(Text("no results yet: choose configurations and run", style="dim"))
            return
        ok = [r for r in self.results if r.status == "ok" and r.per_frame_ms and r.fps]
        label_w = min(28, max(len(config_label(r.config)) for r in self.results))
        # Two bars side by side, each with its number: label, ms bar, "12.3 ms", fps bar, "81 fps".
        room = max(8, (self.content_size.width or 80) - label_w - 2 - 10 - 10)
        bar_w = room // 2
        top_ms = max((r.per_frame_ms or 0 for r in ok), default=1) or 1
        top_fps = max((r.fps or 0 for r in ok), default=1) or 1
        best = max(ok, key=lambda r: r.fps or 0) if ok else None
        text = Text(no_wrap=True, overflow="crop")
        text.append(f"{'':<{label_w}} ", style="dim")
        text.append(f"{'ms per frame (shorter is better)'[: bar_w + 9]:<{bar_w + 10}}", style="dim")
        text.append(f"{'frames per second (longer is better)'[: bar_w + 7]}\n", style="dim")
        for i, r in enumerate(self.results):
            label = config_label(r.config)[:label_w]
            text.append(f"{label:<{label_w}} ", style="bold" if r is best else "")
            if r not in ok:
                text.append(
                    f"{r.status}: {r.reason or 'no figures'}",
                    style="yellow" if r.status == "skipped" else "red",
                )
            else:
                ms, fps = r.per_frame_ms or 0.0, r.fps or 0.0
                text.append(f"{bar(ms / top_ms, bar_w):<{bar_w}}", style="dark_orange")
                text.append(f" {ms:>6.2f} ms ", style="")
                text.append(f"{bar(fps / top_fps, bar_w):<{bar_w}}", style="green" if r is best else "cyan")
                text.append(f" {fps:>6.1f}", style="bold" if r is best else "")
            if i < len(self.results) - 1:
                text.append("\n")
        self.update(text)
