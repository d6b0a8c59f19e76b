"""At most one transcript per request, however often the caller retries it.

A request claims its key in the database before anything is fetched or sent. The unique
constraint on (caller, key) makes the claim atomic across instances, and a conditional
UPDATE hands a released key to exactly one retry. Keys are scoped to the caller, so one
visitor can neither replay nor block another's request.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from chatkit_api.exceptions import IdempotencyKeyInUse, IdempotencyKeyReused
from chatkit_api.models import IdempotencyKey, Transcript, TranscriptStatus


@dataclass(frozen=True)
class Claim:
    record: IdempotencyKey
    # The request already went through: answer with its transcript and send nothing.
    replay: bool


def _fingerprint(request: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()


def idempotency_claim(*, caller: str, key: str, request: dict[str, Any]) -> Claim:
    """Claim `key` (or, without one, the request itself) for this request.

    IdempotencyKeyReused (422) if the key came with a different request, IdempotencyKeyInUse
    (409) while another request holds it. A key whose request recorded a transcript that
    did not go out is handed back with that transcript, to be sent again.
    """
    now = timezone.now()
    fingerprint = _fingerprint(request)
    if key:
        key, lifetime = f"key:{key}", timedelta(hours=settings.IDEMPOTENCY_KEY_HOURS)
    else:
        key, lifetime = (
            f"request:{fingerprint}",
            timedelta(seconds=settings.TRANSCRIPT_DUPLICATE_WINDOW_SECONDS),
        )
    locked_until = now + timedelta(seconds=settings.IDEMPOTENCY_LOCK_SECONDS)

    IdempotencyKey.objects.filter(expires_at__lte=now).delete()
    try:
        with transaction.atomic():
            record = IdempotencyKey.objects.create(
                caller=caller,
                key=key,
                fingerprint=fingerprint,
                created_at=now,
                locked_until=locked_until,
                # Never forgotten while its request may still be running.
                expires_at=max(now + lifetime, locked_until),
            )
        return Claim(record=record, replay=False)
    except IntegrityError:
        pass

    existing = IdempotencyKey.objects.select_related("transcript").filter(caller=caller, key=key).first()
    if existing is None:
        # It expired and was deleted between the two queries; the caller may simply retry.
        raise IdempotencyKeyInUse()
    if existing.fingerprint != fingerprint:
        raise IdempotencyKeyReused()
    if existing.transcript is not None and existing.transcript.status == TranscriptStatus.SENT:
        return Claim(record=existing, replay=True)
    # A lock past its time belongs to a request whose process died.
    taken = (
        IdempotencyKey.objects.filter(pk=existing.pk)
        .filter(Q(locked_until__isnull=True) | Q(locked_until__lte=now))
        .update(locked_until=locked_until)
    )
    if not taken:
        raise IdempotencyKeyInUse()
    existing.locked_until = locked_until
    return Claim(record=existing, replay=False)


def idempotency_attach(*, claim: Claim, transcript: Transcript) -> None:
    """Tie the transcript just recorded to the key, so that a retry sends it rather than a new one."""
    claim.record.transcript = transcript
    claim.record.save(update_fields=["transcript"])


def idempotency_release(*, claim: Claim) -> None:
    """Let the key go once the request ends.

    Without a transcript nothing happened that a retry must not repeat (a refused or
    invalid request, OpenAI down before anything was recorded), so the key is forgotten.
    """
    if claim.record.transcript_id is None:
        IdempotencyKey.objects.filter(pk=claim.record.pk).delete()
    else:
        IdempotencyKey.objects.filter(pk=claim.record.pk).update(locked_until=None)
