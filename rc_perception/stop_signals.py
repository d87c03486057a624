"""SIGINT and SIGTERM as a request to stop, noted from the first instant of a node process.

Light on purpose (no ROS import): the node executables install it before importing rclpy and the nodes,
so a Ctrl-C that arrives while a process is still starting (imports take a second or more on a small
computer; ``ros2 launch`` and respawns make that moment common) is a clean stop, not a KeyboardInterrupt
traceback. ``rc_perception.node_support.run_nodes`` then decides what the noted signal means.
"""

from __future__ import annotations

import contextlib
import os
import signal

__all__ = ['StopSignals']


class StopSignals:
    """SIGINT and SIGTERM ask the process to stop; ``wait`` sleeps until one comes or ``wake`` is called.

    The handlers only note the signal. The main thread is woken through a pipe that the interpreter
    writes from its C-level handler (``signal.set_wakeup_fd``), so no ROS call runs inside a signal
    handler, a signal that arrives before ``wait`` is not lost, and the executor thread can wake the
    main thread the same way when it ends. rclpy must install no handlers of its own
    (``rclpy.init(signal_handler_options=SignalHandlerOptions.NO)``, as run_nodes does).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: int | None = None
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self._previous_fd = signal.set_wakeup_fd(self._write)
        self._previous = {signum: signal.signal(signum, self._note) for signum in self.SIGNALS}

    def _note(self, signum: int, frame) -> None:
        if self.received is None:
            self.received = signum

    def wake(self) -> None:
        """Wake ``wait`` (from any thread)."""
        with contextlib.suppress(BlockingIOError):  # the pipe is full: a wake-up is pending anyway
            os.write(self._write, b'\0')

    def wait(self) -> None:
        os.read(self._read, 1)  # a signal's byte from the interpreter, or wake()'s

    def close(self) -> None:
        """Stop listening. After a stop, later SIGINT/SIGTERM are ignored while the process exits (a
        terminal's Ctrl-C and ros2 launch each send one); otherwise the previous handlers come back."""
        for signum, handler in self._previous.items():
            signal.signal(signum, signal.SIG_IGN if self.received is not None else handler)
        signal.set_wakeup_fd(self._previous_fd)
        os.close(self._read)
        os.close(self._write)
