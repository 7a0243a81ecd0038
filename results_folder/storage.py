"""Result files on any pyarrow filesystem (local, s3://, gs://), written atomically.

The one place that writes result files: tables, text, checkpoints.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from vae_core.errors import ResultsError


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
