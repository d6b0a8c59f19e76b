"""The admin's sign-in form, with attempts limited per client address and per username."""

from typing import Any

from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError

from chatkit_api.exceptions import RateLimited, RateLimitUnavailable
from chatkit_api.ratelimits import (
    ADMIN_SIGN_INS_PER_IP,
    ADMIN_SIGN_INS_PER_USER,
    ip_subject,
    rate_limit_consume,
)
from chatkit_api.visitors import client_ip


def admin_sign_in_subject(username: str) -> str:
    """What a username is counted as: case does not make it another account to guess."""
    return username.strip().casefold()


class ThrottledAdminAuthenticationForm(AdminAuthenticationForm):
    """Each attempt counts before the password is checked, so that a guess past the limit
    learns nothing, right or wrong."""

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username") or ""
        address = client_ip(self.request) if self.request is not None else ""
        try:
            rate_limit_consume(limit=ADMIN_SIGN_INS_PER_IP, subject=ip_subject(address))
            if username:
                rate_limit_consume(limit=ADMIN_SIGN_INS_PER_USER, subject=admin_sign_in_subject(username))
        except (RateLimited, RateLimitUnavailable) as exc:
            raise ValidationError(exc.message, code="throttled") from None
        return super().clean()
