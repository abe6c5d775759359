"""The change counter: a write by one process makes another process's view stale at once."""

from __future__ import annotations

import subprocess
import sys

from flowlet.secrets.changes import ChangeCounter
from flowlet.secrets.model import ValueSecret
from flowlet.secrets.open import open_store
from flowlet.secrets.view import SecretsView

WRITE = """
import sys
from flowlet.secrets.model import ValueSecret
from flowlet.secrets.open import open_store
open_store(sys.argv[1]).put(ValueSecret("token", sys.argv[2]))
"""


def test_counter_starts_at_zero_and_counts_bumps(tmp_path):
    counter = ChangeCounter(tmp_path / "changes")
    first = counter.read()
    counter.bump()
    again = ChangeCounter(tmp_path / "changes")     # another opener sees the same bytes
    assert first == bytes(8) and again.read() != first


def test_a_write_in_another_process_makes_the_view_stale_until_it_reloads(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWLET_MASTER_KEY", "A" * 43)
    store = open_store(tmp_path)
    store.put(ValueSecret("token", "one"))
    view = SecretsView(store)
    view.refresh()
    assert not view.stale()
    subprocess.run([sys.executable, "-c", WRITE, str(tmp_path), "two"], check=True)
    assert view.stale()
    view.refresh()
    assert not view.stale() and view.get("token").value == "two"
