"""Checked, atomic downloads from a list of mirrors (standard library only).

:func:`download_file` tries each mirror in turn, streams the file into a temporary file in
the destination folder while hashing it, and moves it into place with :func:`os.replace`
only when its MD5 matches. A failed, interrupted or corrupted download therefore never
leaves a file under the final name (nor a stray temporary file).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tempfile
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from .dataset import DatasetError

__all__ = ["DEFAULT_TIMEOUT", "DownloadError", "download_file", "file_md5"]

logger = logging.getLogger(__name__)

#: Seconds to wait for a mirror to answer (per connection attempt / read).
DEFAULT_TIMEOUT = 20.0
_CHUNK = 1 << 20
_USER_AGENT = "advlab (+https://github.com/advlab/advlab)"


class DownloadError(DatasetError):
    """Every mirror failed for a file; the message lists why, one reason per mirror."""


def file_md5(path: str | Path, chunk_size: int = _CHUNK) -> str:
    """Return the hexadecimal MD5 digest of a file.

    Args:
        path: The file.
        chunk_size: Bytes read at a time.

    Returns:
        The 32-character lowercase hex digest.
    """
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _join(mirror: str, filename: str) -> str:
    return mirror if mirror.endswith(filename) else mirror.rstrip("/") + "/" + filename


def _fetch(url: str, dest_dir: Path, filename: str, timeout: float) -> tuple[Path, str]:
    """Stream ``url`` into a temporary file in ``dest_dir``; return its path and MD5."""
    if not url.startswith(("https://", "http://")):
        raise ValueError(f"only http(s) URLs are downloaded, got {url!r}")
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    fd, tmp_name = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part", dir=dest_dir)
    tmp_path = Path(tmp_name)
    try:
        digest = hashlib.md5(usedforsecurity=False)
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as resp:
            while chunk := resp.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
        return tmp_path, digest.hexdigest()
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def download_file(
    filename: str,
    mirrors: Sequence[str],
    md5: str,
    dest_dir: str | Path,
    timeout: float = DEFAULT_TIMEOUT,
) -> Path:
    """Download ``filename`` into ``dest_dir``, trying ``mirrors`` one after another.

    A file already at ``dest_dir / filename`` with the right MD5 is reused. Each download
    goes to a temporary file in ``dest_dir`` and is renamed into place only after its MD5
    matched, so the destination is either absent or complete.

    Args:
        filename: Name of the file, appended to each mirror URL (a mirror that already ends
            with ``filename`` is used as is).
        mirrors: Base URLs (``http://`` or ``https://``), tried in order.
        md5: Expected hexadecimal MD5 digest of the file.
        dest_dir: Folder to put the file in (created if needed).
        timeout: Seconds to wait on each connection / read.

    Returns:
        The path of the verified file.

    Raises:
        DownloadError: No mirror delivered a file with the expected MD5; the message lists
            the reason for each mirror.
    """
    dest_dir = Path(dest_dir)
    dest = dest_dir / filename
    expected = md5.lower()
    if dest.is_file() and file_md5(dest) == expected:
        logger.debug("reusing verified %s", dest)
        return dest
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create {dest_dir} to download {filename} ({exc})") from exc
    failures: list[str] = []
    for mirror in mirrors:
        url = _join(mirror, filename)
        logger.info("downloading %s", url)
        try:
            tmp_path, got = _fetch(url, dest_dir, filename, timeout)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            # URLError/HTTPError and timeouts are OSErrors; IncompleteRead and other
            # protocol errors are HTTPExceptions.
            reason = getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"
            failures.append(f"{url}: {reason}")
            logger.warning("download of %s failed: %s", url, reason)
            continue
        if got != expected:
            tmp_path.unlink(missing_ok=True)
            failures.append(f"{url}: md5 mismatch (got {got}, expected {expected})")
            logger.warning("discarding %s: md5 %s, expected %s", url, got, expected)
            continue
        os.replace(tmp_path, dest)
        logger.info("saved %s (md5 verified)", dest)
        return dest
    if not failures:
        failures.append("no mirrors given")
    raise DownloadError(f"could not download {filename}: " + "; ".join(failures))
