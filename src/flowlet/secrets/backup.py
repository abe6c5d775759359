"""`flowlet secrets export` / `import`: every row still sealed, with the id of its master key.

The file holds what the database holds (names and types in the clear, values sealed), so it
is exactly as sensitive as the database, and useless without the master keys. Nothing is
decrypted for writing: an import only proves each row opens under the ring before storing it.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets as _random
from pathlib import Path
from typing import Any

from flowlet.secrets.crypto import DecryptError, associated_data
from flowlet.secrets.keyring import MASTER_KEY_ENV, MasterKeySource, StoreError
from flowlet.secrets.model import SECRET_TYPES, valid_name
from flowlet.secrets.store import SCHEMA_VERSION, Snapshot, Store

FORMAT = "flowlet-secrets-export"
FORMAT_VERSION = 1
MAX_IMPORT_BYTES = 64 << 20


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: Any, where: str) -> bytes:
    if not isinstance(text, str):
        raise StoreError(f"{where}: 'sealed' must be a base64url string")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise StoreError(f"{where}: 'sealed' is not valid base64url") from None


def export_document(store: Store) -> dict:
    snapshot = store.dump()
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "schema_version": SCHEMA_VERSION,
        "key_ids": sorted({row[1] for row in snapshot.secrets.values() if row[1]}
                          | {row[0] for row in snapshot.keys.values() if row[0]}),
        "secrets": [{"name": name, "type": type_, "key_id": kid, "sealed": _b64(data)}
                    for name, (type_, kid, data) in sorted(snapshot.secrets.items())],
        "keys": [{"name": name, "key_id": kid, "sealed": _b64(data)}
                 for name, (kid, data) in sorted(snapshot.keys.items())],
    }


def write_export(store: Store, path: Path) -> dict:
    """Write the export to ``path`` (mode 0600, replaced atomically); returns the document."""
    doc = export_document(store)
    data = (json.dumps(doc, indent=1) + "\n").encode("ascii")
    tmp = path.with_name(f".{path.name}.{_random.token_hex(6)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise StoreError(f"cannot write {path}: {exc.strerror}") from None
    return doc


def read_export(path: Path) -> Snapshot:
    """Parse and validate an export file into sealed rows."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_IMPORT_BYTES + 1)
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror}") from None
    if len(raw) > MAX_IMPORT_BYTES:
        raise StoreError(f"{path} is larger than {MAX_IMPORT_BYTES} bytes")
    try:
        doc = json.loads(raw)
    except ValueError:
        raise StoreError(f"{path} is not JSON (expected a `flowlet secrets export` file)") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise StoreError(f"{path} is not a `flowlet secrets export` file")
    if doc.get("format_version") != FORMAT_VERSION:
        raise StoreError(f"{path} has export format version {doc.get('format_version')!r}; this "
                         f"Flowlet reads version {FORMAT_VERSION}")
    secrets, keys = doc.get("secrets"), doc.get("keys")
    if not isinstance(secrets, list) or not isinstance(keys, list):
        raise StoreError(f"{path}: 'secrets' and 'keys' must be lists")
    return Snapshot(0, _rows(path, secrets, True), _rows(path, keys, False))


def _rows(path: Path, items: list, typed: bool) -> dict:
    rows: dict = {}
    for i, item in enumerate(items, 1):
        where = f"{path}: {'secret' if typed else 'key'} #{i}"
        if not isinstance(item, dict):
            raise StoreError(f"{where} is not an object")
        name, kid = item.get("name"), item.get("key_id")
        if not valid_name(name) or name in rows:
            raise StoreError(f"{where}: missing, invalid or repeated name")
        if kid is not None and not isinstance(kid, str):
            raise StoreError(f"{where}: 'key_id' must be a string")
        data = _unb64(item.get("sealed"), where)
        if typed:
            if item.get("type") not in SECRET_TYPES:
                raise StoreError(f"{where}: unknown type {item.get('type')!r}")
            rows[name] = (item["type"], kid, data)
        else:
            rows[name] = (kid, data)
    return rows


def needs_keys(workspace_dir: Path, snapshot: Snapshot) -> None:
    """Refuse before anything is created when no key ring is set up for the export's keys
    (opening the store would make a new random master key that opens none of them)."""
    ids = sorted({row[1] for row in snapshot.secrets.values() if row[1]}
                 | {row[0] for row in snapshot.keys.values() if row[0]})
    source = MasterKeySource(workspace_dir)
    ring = source.load(create=False)
    lacking = [kid for kid in ids if ring is None or kid not in ring]
    if lacking:
        raise StoreError(f"the export is sealed under master key id{'s' if len(lacking) > 1 else ''} "
                         f"{', '.join(lacking)}, which {source.describe} does not hold; set "
                         f"{MASTER_KEY_ENV} to the keys of the exported store first; nothing was "
                         "imported")


def import_rows(store: Store, snapshot: Snapshot) -> int:
    """Check every row opens under the store's ring, then restore; returns the row count."""
    missing: dict[str, list[str]] = {}
    for name, (type_, kid, data) in snapshot.secrets.items():
        _check_opens(store, missing, name, kid, data, associated_data("secret", name, type_))
    for name, (kid, data) in snapshot.keys.items():
        _check_opens(store, missing, name, kid, data, associated_data("key", name))
    if missing:
        detail = "; ".join(f"key id {kid}: {', '.join(sorted(names)[:5])}"
                           + (" ..." if len(names) > 5 else "") for kid, names in sorted(missing.items()))
        raise StoreError(f"the export needs master keys this key ring ({store.ring.describe}) lacks "
                         f"({detail}); add them to {MASTER_KEY_ENV} or master.key; nothing was "
                         "imported")
    store.restore(snapshot)
    return len(snapshot.secrets) + len(snapshot.keys)


def _check_opens(store: Store, missing: dict, name: str, kid: str | None, data: bytes,
                 aad: bytes) -> None:
    try:
        store.ring.open(kid, data, aad)  # the plaintext is dropped at once
    except KeyError:
        missing.setdefault(str(kid), []).append(name)
    except DecryptError:
        raise StoreError(f"{name!r} in the export does not decrypt under master key id {kid} "
                         "(damaged or edited); nothing was imported") from None
