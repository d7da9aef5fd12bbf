"""The errors xferd raises, and the one place each dependency's errors are translated.

Every error that reaches a frontend is an :class:`XferdError`. The filesystem errors are also the
matching ``OSError`` builtins with ``errno`` and ``strerror`` set, so asyncssh maps them to SFTP
status codes and pyftpdlib answers ``550 <strerror>`` without any per-protocol table::

    XferdError
    ├── ConfigError                              a bad config key or value (names the key)
    ├── AuthError                                login refused (never says why to the client)
    └── FSError (OSError)
        ├── NotFound (FileNotFoundError)         ENOENT
        ├── PermissionDenied (PermissionError)   EACCES
        ├── AlreadyExists (FileExistsError)      EEXIST
        ├── NotADirectory (NotADirectoryError)   ENOTDIR
        ├── IsADirectory (IsADirectoryError)     EISDIR
        ├── DirectoryNotEmpty                    ENOTEMPTY
        ├── InvalidPath                          EINVAL, ENAMETOOLONG or EILSEQ
        ├── InvalidArgument                      EINVAL
        ├── LinkLoop                             ELOOP
        ├── QuotaExceeded                        EDQUOT
        ├── NoSpace                              ENOSPC
        ├── Unsupported                          EOPNOTSUPP
        ├── Busy                                 EBUSY (an object in use, such as a file being uploaded)
        ├── Locked                               EACCES (a WebDAV lock held by another user)
        └── StorageError                         EIO (the metadata or blob store failed)
"""

from __future__ import annotations

import errno


class XferdError(Exception):
    """Base of every error xferd raises on purpose."""


class ConfigError(XferdError):
    """A config file, key or value is wrong. ``problems`` lists each as 'key: what is wrong'."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class AuthError(XferdError):
    """A login was refused."""


class FSError(XferdError, OSError):
    """A filesystem operation failed; ``errno`` says how, ``strerror`` says it to the client."""

    code: int = errno.EIO
    default_message = "I/O error"

    def __init__(self, message: str | None = None, path: str | None = None) -> None:
        text = message or self.default_message
        OSError.__init__(self, self.code, text)
        self.path = path

    def __str__(self) -> str:
        return f"{self.strerror}: {self.path}" if self.path else str(self.strerror)


class NotFound(FSError, FileNotFoundError):
    code = errno.ENOENT
    default_message = "No such file or directory"


class PermissionDenied(FSError, PermissionError):
    code = errno.EACCES
    default_message = "Permission denied"


class AlreadyExists(FSError, FileExistsError):
    code = errno.EEXIST
    default_message = "File already exists"


class NotADirectory(FSError, NotADirectoryError):
    code = errno.ENOTDIR
    default_message = "Not a directory"


class IsADirectory(FSError, IsADirectoryError):
    code = errno.EISDIR
    default_message = "Is a directory"


class DirectoryNotEmpty(FSError):
    code = errno.ENOTEMPTY
    default_message = "Directory not empty"


class InvalidPath(FSError):
    code = errno.EINVAL
    default_message = "Invalid file name"

    def __init__(self, message: str | None = None, path: str | None = None, code: int | None = None) -> None:
        if code is not None:
            self.code = code
        super().__init__(message, path)


class InvalidArgument(FSError):
    code = errno.EINVAL
    default_message = "Invalid argument"


class LinkLoop(FSError):
    code = errno.ELOOP
    default_message = "Too many levels of symbolic links"


class QuotaExceeded(FSError):
    code = errno.EDQUOT
    default_message = "Disk quota exceeded"


class NoSpace(FSError):
    code = errno.ENOSPC
    default_message = "No space left on device"


class Unsupported(FSError):
    code = errno.EOPNOTSUPP
    default_message = "Operation not supported"


class Busy(FSError):
    code = errno.EBUSY
    default_message = "Resource busy"


class Locked(FSError, PermissionError):
    """A lock another user holds covers the path. A PermissionError, so SFTP answers PERMISSION_DENIED
    and FTP 550; WebDAV answers 423 Locked."""

    code = errno.EACCES
    default_message = "Locked by another user"


class StorageError(FSError):
    code = errno.EIO
    default_message = "Storage failure"


def errno_name(exc: OSError) -> str:
    """The symbolic errno of an error ("ENOENT"), as audit events record outcomes."""
    return errno.errorcode.get(exc.errno or 0, "EIO")
