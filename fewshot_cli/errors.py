"""The one exception type the command line turns into a one-line message and exit code 2."""


class FewshotError(Exception):
    """A problem with the user's input or environment, explained in one line.

    The CLI prints ``error: <message>`` and exits with code 2, without a traceback.

    Example:
        >>> raise FewshotError("ways (70) exceeds the 20 classes of split part 'test'")
        Traceback (most recent call last):
        ...
        fewshot_cli.errors.FewshotError: ways (70) exceeds the 20 classes of split part 'test'
    """
