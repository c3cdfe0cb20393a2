"""The one exception type kinema raises for bad input.

A ``KinemaError`` message is a single line that names the file (or option) and the problem.
The CLI prints it as ``kinema: error: <message>`` and exits with status 2; library users can
catch it to tell bad input apart from bugs.
"""


class KinemaError(Exception):
    """Bad input or an impossible request; ``str(err)`` is one line naming the file and problem."""

    def __init__(self, message: str):
        # Keep the message to one line so it reads well in logs and quarantine reports.
        super().__init__(" ".join(str(message).split()))
