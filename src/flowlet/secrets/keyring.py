"""The master key ring: where the keys come from, and which key sealed which row.

``FLOWLET_MASTER_KEY`` holds one or more keys (base64url, comma separated); otherwise
``.flowlet/master.key`` holds either 32 raw bytes (the original format) or base64url keys one
per line. The first key seals every new value; every key opens. Each key is known by a short
key id derived from it (never the key itself), recorded next to every sealed value, so a
store can say which key a row needs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import secrets as _random
import stat
from pathlib import Path

from flowlet.secrets.crypto import DecryptError, Envelope

MASTER_KEY_ENV = "FLOWLET_MASTER_KEY"
MASTER_KEY_BYTES = 32
STATE_DIR = ".flowlet"

# Domain separation: the id is a hash of the key under a label no other hash here uses.
_KEY_ID_LABEL = b"flowlet master key id v1\x00"
_B64URL = re.compile(r"[A-Za-z0-9_-]*={0,2}\Z")


class StoreError(Exception):
    """A store problem, with a message that names the store or the secret and never a value."""


KeyRingError = StoreError  # a master key that cannot be used (never shows key material)


def key_id(key: bytes) -> str:
    """8 hex digits of SHA-256 over a labelled key: names a key without revealing it."""
    return hashlib.sha256(_KEY_ID_LABEL + key).hexdigest()[:8]


def decode_master_key(text: str, where: str = MASTER_KEY_ENV) -> bytes:
    """One key: 32 bytes in base64url, padding optional."""
    text = text.strip()
    if not _B64URL.match(text):
        hint = " (use - and _ instead of + and /)" if re.search(r"[+/]", text) else ""
        raise KeyRingError(f"{where} is not valid base64url{hint}")
    body = text.rstrip("=")
    try:
        key = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise KeyRingError(f"{where} is not valid base64url") from None
    if len(key) != MASTER_KEY_BYTES:
        raise KeyRingError(f"{where} must decode to {MASTER_KEY_BYTES} bytes "
                           f"(43 base64url characters); it decodes to {len(key)}")
    return key


def decode_key_list(text: str, separator: str, where: str) -> list[bytes]:
    """Several keys (comma separated, or one per line); empty entries are skipped."""
    parts = [p.strip() for p in text.split(separator)]
    keys: list[bytes] = []
    for i, part in enumerate(p for p in parts if p and not p.startswith("#")):
        label = where if len(parts) == 1 else f"{where} (key #{i + 1})"
        keys.append(decode_master_key(part, label))
    return keys


def new_master_key_text() -> str:
    """A fresh master key as FLOWLET_MASTER_KEY text (for docs and `flowlet` helpers)."""
    return base64.urlsafe_b64encode(os.urandom(MASTER_KEY_BYTES)).rstrip(b"=").decode("ascii")


class KeyRing:
    """Envelopes under each master key, by key id; the first one seals."""

    __slots__ = ("_by_id", "sealing_id", "describe")

    def __init__(self, keys: list[bytes], describe: str):
        if not keys:
            raise KeyRingError(f"{describe} holds no key")
        self._by_id: dict[str, Envelope] = {}
        for key in keys:
            kid = key_id(key)
            if kid in self._by_id:
                continue  # the same key listed twice
            self._by_id[kid] = Envelope(key)
        self.sealing_id = key_id(keys[0])
        self.describe = describe

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self._by_id)

    def __contains__(self, kid: object) -> bool:
        return kid in self._by_id

    def seal(self, plaintext: bytes, aad: bytes) -> tuple[str, bytes]:
        """(key id, sealed value) under the first key."""
        return self.sealing_id, self._by_id[self.sealing_id].seal(plaintext, aad)

    def open(self, kid: str | None, blob: bytes, aad: bytes) -> tuple[str, bytes]:
        """(key id that opened it, plaintext). ``kid`` None: a row written before key ids
        were recorded, so every key is tried. Raises KeyError for a key the ring lacks."""
        if kid is not None:
            return kid, self._by_id[kid].open(blob, aad)
        for candidate, envelope in self._by_id.items():
            try:
                return candidate, envelope.open(blob, aad)
            except DecryptError:
                continue
        raise DecryptError("no key of the ring opens it")

    def __repr__(self) -> str:
        return f"KeyRing(ids={list(self._by_id)}, sealing={self.sealing_id})"


class MasterKeySource:
    """Where the master keys come from: FLOWLET_MASTER_KEY, else ``.flowlet/master.key``."""

    def __init__(self, workspace_dir: Path):
        self.file = Path(workspace_dir) / STATE_DIR / "master.key"
        env = os.environ.get(MASTER_KEY_ENV, "")
        # decoded up front: a bad variable is reported before anything is created
        self._env_keys = decode_key_list(env, ",", MASTER_KEY_ENV) if env.strip() else None
        self.describe = MASTER_KEY_ENV if self._env_keys else str(self.file)

    def load(self, create: bool) -> KeyRing | None:
        """The ring; ``create`` allows writing a new key file when there is none."""
        if self._env_keys:
            return KeyRing(self._env_keys, MASTER_KEY_ENV)
        try:
            return KeyRing(self._read(), str(self.file))
        except FileNotFoundError:
            if not create:
                return None
        self._create()
        return KeyRing(self._read(), str(self.file))

    def _read(self) -> list[bytes]:
        try:
            with open(self.file, "rb") as f:
                mode = os.fstat(f.fileno()).st_mode
                data = f.read(64 * 1024)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise KeyRingError(f"cannot read the master key {self.file}: {exc.strerror}") from None
        if mode & 0o077:
            # as ssh does with private keys: a key others can read is not a secret any more
            raise KeyRingError(f"the master key {self.file} is accessible by group or others "
                               f"(mode {stat.S_IMODE(mode):04o}); it must be private to its owner: "
                               f"chmod 600 {self.file}")
        if len(data) == MASTER_KEY_BYTES:
            return [data]  # the original format: 32 raw bytes
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            text = None
        if text is None or not text.strip():
            raise KeyRingError(f"the master key {self.file} must hold exactly {MASTER_KEY_BYTES} "
                               "bytes, or base64url keys one per line")
        try:
            return decode_key_list(text, "\n", f"the master key {self.file}")
        except KeyRingError as exc:
            raise KeyRingError(f"{exc}; a master key file holds exactly {MASTER_KEY_BYTES} bytes, "
                               "or base64url keys one per line") from None

    def _create(self) -> None:
        """Write 32 random bytes, mode 0600, so that no process ever reads a partial file.

        The bytes go to a fresh temporary file (O_EXCL) that is then hard-linked into place;
        the link fails if another process got there first, and then its key is used.
        """
        make_state_dir(self.file.parent)
        tmp = self.file.with_name(f".master.key.{os.getpid()}.{_random.token_hex(6)}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.fchmod(fd, 0o600)
                os.write(fd, os.urandom(MASTER_KEY_BYTES))
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, self.file)
            except FileExistsError:
                pass  # another process created it first: use theirs
            finally:
                os.unlink(tmp)
        except OSError as exc:
            raise KeyRingError(f"cannot create the master key {self.file}: {exc.strerror}") from None


def make_state_dir(path: Path) -> None:
    try:
        path.mkdir(mode=0o700, exist_ok=True)
    except OSError as exc:
        raise KeyRingError(f"cannot create {path}: {exc.strerror}") from None
