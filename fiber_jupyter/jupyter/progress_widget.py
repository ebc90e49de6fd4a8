"""A call's progress as widgets in the cell that made the call, looking like tqdm.notebook.

One row, as tqdm.notebook draws it: the call's name, a bar, and
``450/1000 [00:05<00:06, 90.1 tasks/s]``; below it, the crash and retry notes
of the call. The bar turns green when every task succeeded and red when the
call failed or stopped early, and the counts become the one-line summary.

The display is opened on the pool's notifier thread, long after the call
started, so it carries the parent message of the cell that made the call:
without it, ipykernel 7 would show it in whatever cell ran last, or in none.
"""

from __future__ import annotations

import html
from typing import Any, Callable, Optional

import ipywidgets
from IPython.display import display

from ..events import CallStarted, Progress
from ..progress import CallDisplay, counts_text, summary_text

MAX_NOTES = 50


class CallBox(ipywidgets.VBox):
    """The display's outer box; front ends without widgets show the call's name."""

    def __init__(self, label: str, children: list) -> None:
        super().__init__(children)
        self._label = label

    def _repr_mimebundle_(self, **kwargs: Any) -> dict:
        return {**super()._repr_mimebundle_(**kwargs), "text/plain": self._label}


class WidgetDisplay(CallDisplay):
    """The widgets of one call; every method runs on the pool's notifier thread."""

    def __init__(self, call: CallStarted) -> None:
        self.label = ipywidgets.HTML(html.escape(call.label))
        self.bar = ipywidgets.IntProgress(value=0, min=0, max=max(call.total, 1),
                                          layout=ipywidgets.Layout(flex="2"))
        self.counts = ipywidgets.HTML(f"0/{call.total}")
        self.notes = ipywidgets.HTML("")
        self._note_lines: list = []
        self.box = CallBox(call.label, [ipywidgets.HBox([self.label, self.bar, self.counts]),
                                        self.notes])

    def update(self, progress: Progress) -> None:
        self.bar.value = progress.done
        self.counts.value = html.escape(counts_text(progress))

    def note(self, text: str) -> None:
        self._note_lines = [*self._note_lines, html.escape(text)][-MAX_NOTES:]
        self.notes.value = "<br>".join(self._note_lines)

    def close(self, progress: Progress) -> None:
        self.bar.value = progress.done
        succeeded = progress.done == progress.total and not progress.failed
        self.bar.bar_style = "success" if succeeded else "danger"
        self.counts.value = html.escape(summary_text(progress))


def widget_factory(shell: Any) -> Callable[[CallStarted], Callable[[], CallDisplay]]:
    """The display factory a pool uses in this kernel (see fiber_jupyter.progress)."""

    def prepare(call: CallStarted) -> Callable[[], CallDisplay]:
        parent = _current_parent(shell)

        def open_display() -> CallDisplay:
            widgets = WidgetDisplay(call)
            show_in_cell(shell, parent, widgets.box)
            return widgets

        return open_display

    return prepare


def _current_parent(shell: Any) -> Optional[dict]:
    """The message the calling thread is answering: the cell that made the call."""
    get_parent = getattr(shell, "get_parent", None)
    return get_parent() if get_parent is not None else getattr(shell, "parent_header", None)


def show_in_cell(shell: Any, parent: Optional[dict], widget: Any) -> None:
    """Display ``widget`` in the output of the cell that sent ``parent``.

    ipykernel >= 7.4 sets the parent for this thread alone. Older kernels have
    no such call: ipykernel 6 shows a thread's output in the running cell,
    which is the calling cell while the call blocks it.
    """
    set_thread_parent = getattr(shell, "set_thread_parent", None)
    if parent is None or set_thread_parent is None:
        display(widget)
        return
    tokens = set_thread_parent(parent)
    try:
        display(widget)
    finally:
        shell.reset_thread_parent(tokens)
