"""The exceptions the command line turns into one line: ``FewshotError`` (exit code 2) and
``TrainingInterrupted`` (exit code 128 + signal). Light, so ``cli`` imports them at once."""

import signal


class FewshotError(Exception):
    """A problem with the user's input or environment, explained in one line.

    The CLI prints ``error: <message>`` and exits with code 2, without a traceback.

    Example:
        >>> raise FewshotError("ways (70) exceeds the 20 classes of split part 'test'")
        Traceback (most recent call last):
        ...
        fewshot_cli.errors.FewshotError: ways (70) exceeds the 20 classes of split part 'test'
    """


class TrainingInterrupted(Exception):
    """Training stopped on a signal after saving ``last.pt``; resume with ``--resume``.

    ``signum`` is the signal that stopped it (the command exits with 128 + signum: 130 for
    Ctrl-C, 143 for SIGTERM). Raised by ``run.training`` (which re-exports it).
    """

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.signum = int(signum)
