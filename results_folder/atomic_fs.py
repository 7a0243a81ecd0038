"""A local filesystem whose every written file appears whole or not at all, for Ray Tune.

Ray Tune copies its experiment state (trial list, searcher, callbacks) and the trials'
checkpoints into the storage path file by file, writing each in place: a driver killed in the
middle of a copy leaves a truncated file there, and the resume then ends in `EOFError: Ran out
of input`. Object stores publish an object only once its upload completes; on a local or NFS
path this filesystem does the same by writing to a temporary name and renaming at close, which
POSIX makes atomic. Ray takes it through its public `storage_filesystem` option.
"""

from __future__ import annotations

import os
import uuid

import pyarrow as pa
import pyarrow.fs as pafs


def atomic_local_filesystem() -> pafs.FileSystem:
    return pafs.PyFileSystem(AtomicLocalHandler())


class AtomicLocalHandler(pafs.FileSystemHandler):
    """pyarrow's LocalFileSystem, but for the output streams (see the module docstring)."""

    def __init__(self) -> None:
        self.local = pafs.LocalFileSystem()

    def __eq__(self, other) -> bool:
        return isinstance(other, AtomicLocalHandler)

    def __reduce__(self):  # pickled with Ray's storage context to every worker
        return AtomicLocalHandler, ()

    def open_output_stream(self, path: str, metadata=None) -> pa.NativeFile:
        return pa.PythonFile(_RenamedAtClose(path), mode="w")

    def open_append_stream(self, path: str, metadata=None) -> pa.NativeFile:
        return self.local.open_append_stream(path, metadata=metadata)

    def get_type_name(self) -> str:
        return "atomic-local"

    def equals(self, other) -> bool:
        return self == other

    def normalize_path(self, path: str) -> str:
        return self.local.normalize_path(path)

    def get_file_info(self, paths):
        return self.local.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.local.get_file_info(selector)

    def create_dir(self, path: str, recursive: bool) -> None:
        self.local.create_dir(path, recursive=recursive)

    def delete_dir(self, path: str) -> None:
        self.local.delete_dir(path)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self.local.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        raise OSError("refusing to delete the contents of the root folder")

    def delete_file(self, path: str) -> None:
        self.local.delete_file(path)

    def move(self, src: str, dest: str) -> None:
        self.local.move(src, dest)

    def copy_file(self, src: str, dest: str) -> None:
        with self.local.open_input_stream(src) as source, self.open_output_stream(dest) as out:
            while chunk := source.read(1 << 20):
                out.write(chunk)

    def open_input_stream(self, path: str) -> pa.NativeFile:
        return self.local.open_input_stream(path)

    def open_input_file(self, path: str) -> pa.NativeFile:
        return self.local.open_input_file(path)


class _RenamedAtClose:
    """A file written under a temporary name beside `path`, renamed to `path` when closed
    (and removed instead, if the writing failed)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.tmp = os.path.join(
            os.path.dirname(path), f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp"
        )
        self.file = open(self.tmp, "wb")  # noqa: SIM115 - closed (and renamed) in close()
        self.closed = self.failed = False

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except BaseException:
            self.failed = True  # a full disk, say: the old file stays
            raise

    def flush(self) -> None:
        self.file.flush()

    def tell(self) -> int:
        return self.file.tell()

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.file.close()
        except BaseException:
            self.failed = True
            raise
        finally:
            if self.failed:
                os.remove(self.tmp)
        os.replace(self.tmp, self.path)
