"""When a node renews: between 50% and 80% of the lifetime, counted from issuance."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from raftstore.node._renewal import CertificateRenewer
from raftstore.keyring import CERT_BACKDATE, CertificateIdentity

ISSUED = datetime(2026, 1, 1, tzinfo=timezone.utc)


@given(hours=st.integers(min_value=1, max_value=24 * 365), seed=st.integers(0, 2**32))
def test_due_between_50_and_80_percent(hours: int, seed: int) -> None:
    validity = timedelta(hours=hours)
    identity = CertificateIdentity("n", "c", "swarm-worker", ISSUED - CERT_BACKDATE, ISSUED + validity)
    due = CertificateRenewer(hooks=None, rng=random.Random(seed)).due_at(identity)  # type: ignore[arg-type]
    assert ISSUED + validity * 0.5 <= due <= ISSUED + validity * 0.8


def test_due_time_is_stable_per_certificate() -> None:
    identity = CertificateIdentity("n", "c", "swarm-worker", ISSUED - CERT_BACKDATE, ISSUED + timedelta(hours=1))
    renewer = CertificateRenewer(hooks=None)  # type: ignore[arg-type]
    assert renewer.due_at(identity) == renewer.due_at(identity)
