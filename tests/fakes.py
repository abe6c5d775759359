"""Stand-ins shared by the policy unit tests (the real ones are tested on their own)."""

from __future__ import annotations


class View:
    """The SecretsView contract: get(name) returns the same object until the secret changes."""

    def __init__(self, *secrets):
        self.secrets = {s.name: s for s in secrets}

    def get(self, name):
        return self.secrets.get(name)

    def put(self, secret):
        self.secrets[secret.name] = secret


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 100.0):
        self.now = now

    def __call__(self) -> float:
        return self.now
