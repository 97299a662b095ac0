"""Action plugin artifact_fetch (role artifacts): the release archive in the controller's cache,
verified against the kit's pin, and the SHA-256 of the binaries inside it.

It runs in Ansible's worker on the controller and opens no connection: the earlier
tasks (cache directory, get_url, stat, removal, archive_digests) delegated to
localhost cost a local interpreter start-up and three full reads of the archive
per run; this reads the archive once when it is already cached.

Never fails for a wrong or missing download: it reports ``verified: false`` with
``problem`` (``CHECKSUM MISMATCH`` or ``DOWNLOAD FAILED``) and ``detail``, deletes
what it fetched, and the role's assert words the refusal (it knows the pin's
origin). It fails only for a bad request or a verified archive that lacks a
listed binary. Filling the controller's cache is not a change to a host, so it
also runs in check mode and always reports ``changed: false``.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import shutil
import tarfile
import zipfile

from ansible.module_utils.common.text.converters import to_native
from ansible.module_utils.urls import open_url
from ansible.plugins.action import ActionBase

CHUNK = 1 << 20

ARGUMENT_SPEC = {
    "url": {"type": "str", "required": True},
    "dest": {"type": "path", "required": True},
    "sha256": {"type": "str", "required": True},
    "members": {"type": "list", "elements": "str", "required": True},
    "timeout": {"type": "int", "default": 30},
}


def sha256_stream(stream) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: stream.read(CHUNK), b""):
        digest.update(block)
    return digest.hexdigest()


def sha256_file(path: str) -> str:
    with open(path, "rb") as handle:
        return sha256_stream(handle)


def pick(names: list[str], wanted: str) -> str | None:
    """The archive member that stands for ``wanted``: its exact path (with or without a
    leading ``./``), else the only member with that base name (binaries sit at the top
    of a release archive or one directory down)."""
    normal = {posixpath.normpath(n.lstrip("/")): n for n in names if not n.endswith("/")}
    target = posixpath.normpath(wanted.lstrip("/"))
    if target in normal:
        return normal[target]
    by_base = [original for path, original in normal.items() if posixpath.basename(path) == target]
    return by_base[0] if len(by_base) == 1 else None


def member_digests(path: str, members: list[str]) -> dict[str, str]:
    """{member: sha256} read from a .zip or tar archive without unpacking it;
    raises KeyError with the names the archive does not hold."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            chosen = {m: pick(names, m) for m in members}
            missing = [m for m, name in chosen.items() if name is None]
            if missing:
                raise KeyError(missing)
            found = {}
            for member, name in chosen.items():
                with archive.open(name) as stream:
                    found[member] = sha256_stream(stream)
            return found
    with tarfile.open(path, mode="r:*") as archive:
        regular = {info.name: info for info in archive.getmembers() if info.isfile()}
        chosen = {m: pick(list(regular), m) for m in members}
        missing = [m for m, name in chosen.items() if name is None]
        if missing:
            raise KeyError(missing)
        return {member: sha256_stream(archive.extractfile(regular[name])) for member, name in chosen.items()}


def cached_digests(cache: str, archive_sha256: str, members: list[str]) -> dict[str, str] | None:
    """The digests kept next to the archive, if they were read from this very archive."""
    try:
        with open(cache) as handle:
            kept = json.load(handle)
        if kept.get("archive_sha256") == archive_sha256 and set(members) <= set(kept.get("digests", {})):
            return {m: kept["digests"][m] for m in members}
    except (OSError, ValueError, AttributeError):
        pass  # missing or unreadable: read the archive again
    return None


def remove(*paths: str) -> None:
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def download(url: str, part: str, timeout: int) -> None:
    """``url`` (http, https or file) into ``part``; OSError-family errors go to the caller."""
    response = open_url(url, timeout=timeout, http_agent="ai4os-kit")
    try:
        with open(part, "wb") as out:
            shutil.copyfileobj(response, out, CHUNK)
    finally:
        response.close()


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        _, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        expected = args["sha256"].strip().lower()
        dest, url, members = args["dest"], args["url"], args["members"]
        result.update(changed=False, verified=False, downloaded=False, problem="", detail="", digests={})
        os.makedirs(os.path.dirname(dest), mode=0o755, exist_ok=True)

        if not (os.path.isfile(dest) and sha256_file(dest) == expected):
            part = dest + ".part"
            try:
                download(url, part, args["timeout"])
            except Exception as error:  # urllib, http, socket and file errors all mean "not fetched"
                remove(part, dest)
                result.update(problem="DOWNLOAD FAILED", detail=to_native(error))
                return result
            got = sha256_file(part)
            if got != expected:
                remove(part, dest)
                result.update(problem="CHECKSUM MISMATCH", detail=f"the file served has sha256 {got}")
                return result
            os.chmod(part, 0o644)
            os.replace(part, dest)
            result["downloaded"] = True

        cache = dest + ".digests.json"
        # digests kept for an archive fetched before are read again after a new download
        digests = None if result["downloaded"] else cached_digests(cache, expected, members)
        if digests is None:
            try:
                digests = member_digests(dest, members)
            except KeyError as missing:
                result.update(failed=True, msg=f"artifacts: {dest} holds no file named {', '.join(missing.args[0])}. "
                                               "Fix: check the binaries listed in artifacts_layouts for this release.")
                return result
            except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as error:
                result.update(failed=True, msg=f"artifacts: cannot read {dest}: {to_native(error)}. Fix: remove it "
                                               "from the controller's cache and re-run.")
                return result
            with open(cache + ".tmp", "w") as handle:
                json.dump({"archive_sha256": expected, "digests": digests}, handle, indent=1, sort_keys=True)
            os.replace(cache + ".tmp", cache)
        result.update(verified=True, digests=digests)
        return result
