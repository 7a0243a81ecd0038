"""Result files on any pyarrow filesystem (local, s3://, gs://), written atomically.

The one place that writes result files: tables, text, checkpoints.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from vae_core.errors import ResultsError, one_line

PROBE_PREFIX = ".vae-sweep-write-check-"  # the file check_writable writes and deletes


def is_uri(path: str) -> bool:
    return "://" in str(path)


def resolve(path: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    """A filesystem and the path inside it; plain paths become absolute local ones."""
    path = str(path)
    if not is_uri(path):
        return pafs.LocalFileSystem(), os.path.abspath(path)
    try:
        return pafs.FileSystem.from_uri(path)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as err:
        raise ResultsError(f"cannot open storage {path}: {err}") from err


def join(base: str, *parts: str) -> str:
    """Join path parts onto a local path or a URI."""
    if is_uri(base):
        return "/".join([base.rstrip("/"), *parts])
    return os.path.join(base, *parts)


def exists(path: str) -> bool:
    fs, p = resolve(path)
    return fs.get_file_info(p).type != pafs.FileType.NotFound


def check_writable(root: str) -> None:
    """Check that result files can be written under the folder `root` by writing and deleting
    a small file there: in `root`, or where it does not exist yet, in its nearest existing
    folder (the writers create the rest), so the check creates nothing. A sweep refused later
    (a --resume with nothing to resume) leaves no folder behind, and two sweeps starting side
    by side do not remove each other's.

    Run before a sweep loads data or starts Ray, so that a results folder it cannot write (a
    path under a file, a read-only mount, a missing bucket, refused credentials) is one line at
    the start rather than a traceback from a worker minutes later.

    Raises:
        ResultsError: `root` cannot be written; the message names it and why.
    """
    fs, path = resolve(root)
    if isinstance(fs, pafs.LocalFileSystem):
        problem = _local_problem(path)
    else:
        problem = _object_store_problem(fs, path)
    if problem:
        raise ResultsError(f"cannot write results to the storage {root}: {problem}")


def _local_problem(path: str) -> str | None:
    folder = path
    while not os.path.lexists(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        return f"{'it' if folder == path else folder} is a file, not a folder"
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=PROBE_PREFIX) as probe:
            probe.write(b"vae-sweep")
            probe.flush()
    except OSError as err:
        # As mkdir says it for `path`: the probe's own name would tell the user nothing.
        return err.strerror or one_line(err)
    return None


def _object_store_problem(fs: pafs.FileSystem, path: str) -> str | None:
    # An object store has no folders: an object written under `path` is the whole test.
    probe = f"{path.rstrip('/')}/{PROBE_PREFIX}{uuid.uuid4().hex}"
    try:
        with fs.open_output_stream(probe) as out:
            out.write(b"vae-sweep")
        fs.delete_file(probe)
    except (OSError, pa.ArrowException) as err:
        # pyarrow's S3 messages start with the operation on the probe's key and end with a
        # request ID, neither of which tells the user anything; the AWS error between them does.
        text = one_line(err)
        if "AWS Error " in text:
            text = text[text.index("AWS Error ") :]
        return re.sub(r"\s*\(Request ID: [^)]*\)", "", text)
    return None


def write_bytes(path: str | os.PathLike, write: Callable) -> None:
    """Call `write(stream)` into a temporary name, then rename: readers never see half a file.

    Object stores (s3, gs) publish an object only when its upload completes, so there the
    final name is written directly.
    """
    fs, p = resolve(path)
    fs.create_dir(os.path.dirname(p), recursive=True)
    if not isinstance(fs, pafs.LocalFileSystem):
        with fs.open_output_stream(p) as out:
            write(out)
        return
    tmp = os.path.join(os.path.dirname(p), f".{os.path.basename(p)}.{uuid.uuid4().hex}.tmp")
    try:
        with fs.open_output_stream(tmp) as out:
            write(out)
        fs.move(tmp, p)
    except BaseException:
        if fs.get_file_info(tmp).type != pafs.FileType.NotFound:
            fs.delete_file(tmp)
        raise


def write_parquet(df: pd.DataFrame, path: str) -> None:
    table = pa.Table.from_pandas(df, preserve_index=False)
    write_bytes(path, lambda out: pq.write_table(table, out))


def write_text(text: str, path: str) -> None:
    write_bytes(path, lambda out: out.write(text.encode()))


def read_parquet(path: str, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a Parquet table; a missing, unreadable or incomplete one raises ResultsError."""
    fs, p = resolve(path)
    if fs.get_file_info(p).type == pafs.FileType.NotFound:
        raise ResultsError(f"{path} does not exist")
    try:
        table = pq.read_table(p, filesystem=fs)
    except (pa.ArrowException, OSError) as err:
        raise ResultsError(f"{path} is not a readable Parquet table ({err})") from err
    missing = [c for c in columns or [] if c not in table.column_names]
    if missing:
        raise ResultsError(f"{path} lacks the columns {', '.join(missing)}")
    return table.to_pandas()


def read_text(path: str) -> str:
    fs, p = resolve(path)
    try:
        with fs.open_input_stream(p) as f:
            return f.read().decode()
    except FileNotFoundError as err:
        raise ResultsError(f"{path} does not exist") from err
    except (OSError, UnicodeDecodeError) as err:
        raise ResultsError(f"cannot read {path}: {err}") from err


def delete(path: str) -> None:
    """Remove a file if it exists."""
    fs, p = resolve(path)
    if fs.get_file_info(p).type != pafs.FileType.NotFound:
        fs.delete_file(p)


def copy(src: str, dst: str) -> None:
    """Copy one file between any two filesystems (e.g. a local file to s3://)."""
    src_fs, src_path = resolve(src)
    dst_fs, dst_path = resolve(dst)
    pafs.copy_files(src_path, dst_path, source_filesystem=src_fs, destination_filesystem=dst_fs)


def resolve_path(root: str, path: str) -> str:
    """A path from a table: relative to the results folder `root` unless absolute or a URI."""
    if is_uri(path) or os.path.isabs(path):
        return path
    return join(root, path)


@contextlib.contextmanager
def local_copy(path: str) -> Iterator[str]:
    """A local file holding `path`'s bytes, for readers that need one (torch.load, sqlite).

    Always a copy, even of a local file: opening optuna.db through sqlite may write to it, and
    a reader must not change the sweep's files.
    """
    fs, inner = resolve(path)
    with tempfile.TemporaryDirectory(prefix="vae-sweep-") as tmp:
        local = os.path.join(tmp, os.path.basename(inner))
        try:
            with fs.open_input_stream(inner) as src, open(local, "wb") as dst:
                shutil.copyfileobj(src, dst)
        except FileNotFoundError as err:
            raise ResultsError(f"{path} does not exist") from err
        except OSError as err:
            raise ResultsError(f"cannot read {path}: {err}") from err
        yield local
