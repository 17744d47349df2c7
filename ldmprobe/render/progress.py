"""Progress bars on stderr for the reporting protocol (only on a terminal)."""

from __future__ import annotations


class EncodingProgress:
    """A progress bar on stderr while the vocabulary is encoded (only on a terminal)."""

    def __init__(self, terminal):
        self.terminal = terminal
        self.bar = self.task = None  # bar: None until the first report, False off a terminal

    def __enter__(self):
        return self.update

    def update(self, done: int, total: int) -> None:
        if self.bar is None:
            console = self.terminal.err_console()
            self.terminal.info(f"encoding {total} vocabulary entries (cached for the next query)")
            if not console.is_terminal:
                self.bar = False
                return
            from rich.progress import Progress

            self.bar = Progress(console=console, transient=True)
            self.bar.start()
            self.task = self.bar.add_task("encoding", total=total)
        if self.bar:
            self.bar.update(self.task, completed=done)

    def __exit__(self, *exc):
        if self.bar:
            self.bar.stop()
        return False
