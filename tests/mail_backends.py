"""django-ses, with a way to make one send slow or have its process die while SES is asked.

Everything else is the real backend: what goes through reaches moto as any message does.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

from django.core.mail import EmailMessage
from django_ses import SESBackend

from tests.fake_chatkit import Hold


class ProcessKilled(BaseException):
    """A process stopped from outside (SIGKILL, a Lambda timeout): no `except Exception` in
    the service sees it, so none of its failure handling runs."""


@dataclass
class SendTrouble:
    # The next send waits here before SES is asked, as if SES were slow to answer.
    holds: list[Hold] = field(default_factory=list)
    # The next send's process dies before SES answered: SES never got the message.
    kill_next: bool = False


TROUBLE = SendTrouble()


class TroubledSESBackend(SESBackend):
    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int | None:
        if TROUBLE.kill_next:
            TROUBLE.kill_next = False
            raise ProcessKilled()
        if TROUBLE.holds:
            hold = TROUBLE.holds.pop(0)
            hold.arrived.set()
            if not hold.release.wait(timeout=10):
                raise AssertionError("The held send was never released.")
        return super().send_messages(email_messages)
