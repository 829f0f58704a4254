"""Data: the idx reader on generated files (corrupt ones included), downloads, views, splits, CLI errors."""
import gzip
import hashlib
import http.server
import threading
from functools import partial

import numpy as np
import pytest
import torch

from genlab.cli import main
from genlab.data import idx, load_dataset
from genlab.errors import DataError

pytestmark = pytest.mark.unit


def test_idx_round_trip_plain_and_gzip(tmp_path):
    a = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    for name in ("a.idx", "a.idx.gz"):
        idx.write_idx(tmp_path / name, a)
        np.testing.assert_array_equal(idx.read_idx(tmp_path / name, expect_magic=2051), a)
    lab = np.arange(10, dtype=np.uint8)
    idx.write_idx(tmp_path / "l.gz", lab)
    np.testing.assert_array_equal(idx.read_idx(tmp_path / "l.gz", expect_magic=2049), lab)


def _raw(tmp_path, data: bytes):
    p = tmp_path / "x.gz"
    with gzip.open(p, "wb") as f:
        f.write(data)
    return p


@pytest.mark.parametrize("case,message", [
    ("truncated_payload", "truncated"), ("wrong_magic", "magic number 2049, expected 2051"),
    ("not_idx", "bad magic"), ("short_header", "header cut short"), ("tiny", "not an idx file")])
def test_idx_reader_rejects_corrupt_files(tmp_path, case, message):
    a = np.zeros((4, 3, 3), dtype=np.uint8)
    idx.write_idx(tmp_path / "ok", a)
    good = (tmp_path / "ok").read_bytes()
    data = {"truncated_payload": good[:-5], "wrong_magic": good[:3] + b"\x01" + good[4:8],
            "not_idx": b"\x89PNG" + good[4:], "short_header": good[:10], "tiny": b"\x00"}[case]
    with pytest.raises(DataError, match=message):
        idx.read_idx(_raw(tmp_path, data), expect_magic=2051)


def test_idx_reader_rejects_a_cut_gzip_stream(tmp_path):
    idx.write_idx(tmp_path / "a.gz", np.zeros((50, 28, 28), dtype=np.uint8) + 7)
    p = tmp_path / "a.gz"
    p.write_bytes(p.read_bytes()[:40])
    with pytest.raises(DataError, match="cannot decompress"):
        idx.read_idx(p)


def test_mnist_loader_splits_and_views(fake_mnist):
    train = load_dataset("mnist", "train", data_dir=str(fake_mnist))
    val = load_dataset("mnist", "val", data_dir=str(fake_mnist))
    test = load_dataset("mnist", "test", data_dir=str(fake_mnist))
    assert (len(train), len(val), len(test)) == (100, 20, 40)
    assert train.tensors[0].shape[1:] == (1, 28, 28) and train.info.shape == (1, 28, 28)
    x = train.tensors[0]
    binar = load_dataset("mnist", "train", data_dir=str(fake_mnist), view="binarized").tensors[0]
    torch.testing.assert_close(binar, (x > 0.5).float())
    quant = load_dataset("mnist", "train", data_dir=str(fake_mnist), view="quantized", levels=16).tensors[0]
    torch.testing.assert_close(quant, torch.clamp(torch.floor(16 * x), max=15))
    assert quant.max() == 15 and quant.min() == 0
    # the split is fixed: loading again gives the same validation images
    torch.testing.assert_close(load_dataset("mnist", "val", data_dir=str(fake_mnist)).tensors[0], val.tensors[0])


def test_dynamic_binarization_draws_fresh_pixels(fake_mnist):
    d = load_dataset("mnist", "train", data_dir=str(fake_mnist), view="dynamic")
    batch = tuple(t[:8] for t in d.tensors)
    a = d.batch_transform(batch, torch.Generator().manual_seed(0))[0]
    b = d.batch_transform(batch, torch.Generator().manual_seed(1))[0]
    assert set(a.unique().tolist()) <= {0.0, 1.0} and not torch.equal(a, b)
    test = load_dataset("mnist", "test", data_dir=str(fake_mnist), view="dynamic").tensors[0]
    assert set(test.unique().tolist()) <= {0.0, 1.0}   # eval splits are drawn once, deterministically


def test_evaluating_a_dynamic_train_split_scores_fixed_binary_draws(fake_mnist):
    """Issue 10 item 3: evaluation batches of the dynamic train split are Bernoulli draws with fixed seeds."""
    d = load_dataset("mnist", "train", data_dir=str(fake_mnist), view="dynamic")
    first = torch.cat([b[0] for b in d.eval_batches(32)])
    again = torch.cat([b[0] for b in d.eval_batches(32)])
    assert set(first.unique().tolist()) == {0.0, 1.0} and torch.equal(first, again)
    assert first.shape == d.tensors[0].shape
    grey = d.tensors[0]
    assert abs(float(first.mean()) - float(grey.mean())) < 0.02          # draws of Bernoulli(grey)
    assert len([b for b in d.eval_batches(32)]) == 4 and torch.equal(torch.cat([b[1] for b in d.eval_batches(32)]),
                                                                       d.tensors[1])


def test_digits_is_offline_and_split_disjointly():
    sizes = {s: len(load_dataset("digits", s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 1257, "val": 180, "test": 360}
    d = load_dataset("digits", "train")
    assert d.info.shape == (1, 8, 8) and 0 <= d.tensors[0].min() and d.tensors[0].max() <= 1


def test_counts_that_disagree_are_reported(fake_mnist):
    folder = fake_mnist / "mnist"
    idx.write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(39, dtype=np.uint8))
    from genlab.data import images
    images._MNIST_FILES["mnist"]["sha256"]["t10k-labels-idx1-ubyte.gz"] = idx.sha256(folder / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DataError, match="40 images but .* 39 labels"):
        load_dataset("mnist", "test", data_dir=str(fake_mnist))


def test_checksum_mismatch_and_missing_folder_are_clear(fake_mnist, tmp_path):
    f = fake_mnist / "mnist" / "t10k-images-idx3-ubyte.gz"
    f.write_bytes(f.read_bytes()[:-10])
    with pytest.raises(DataError, match="does not match the published"):
        load_dataset("mnist", "test", data_dir=str(fake_mnist))
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("mnist", "test", data_dir=str(tmp_path / "nowhere"))


def test_cli_data_errors_exit_2_without_traceback(fake_mnist, capsys):
    f = fake_mnist / "mnist" / "train-labels-idx1-ubyte.gz"
    f.write_bytes(b"garbage")
    assert main(["data", "info", "mnist", "--data-dir", str(fake_mnist), "--load"]) == 2
    err = capsys.readouterr().err
    assert "train-labels-idx1-ubyte.gz" in err and "Traceback" not in err


def test_cli_data_list_and_info(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "mnist" in out and "digits" in out and "fashion-mnist" in out
    assert main(["data", "info", "digits", "--load"]) == 0
    assert "train: 1257 examples" in capsys.readouterr().out


@pytest.fixture
def http_folder(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_download_checks_sha256_and_falls_back_to_the_next_mirror(http_folder, tmp_path):
    root, url = http_folder
    (root / "f.bin").write_bytes(b"payload")
    good = hashlib.sha256(b"payload").hexdigest()
    dest = tmp_path / "cache" / "f.bin"
    idx.download([url + "missing.bin", url + "f.bin"], dest, good, progress=False)
    assert dest.read_bytes() == b"payload"
    dest.unlink()
    with pytest.raises(DataError, match="does not match"):
        idx.download([url + "f.bin"], dest, "0" * 64, progress=False)
    assert not dest.exists() and not list(dest.parent.glob("*.part"))   # nothing half-written is left


# ----------------------------------------------------------------- issue 9: unpacked idx files, advice
def _unpack(folder, names=None):
    """Write the uncompressed idx file beside each ``.gz`` (or only those in ``names``)."""
    for gz in sorted(folder.glob("*.gz")):
        if names is None or gz.name in names:
            (folder / gz.name[:-3]).write_bytes(gzip.decompress(gz.read_bytes()))


def test_unpacked_idx_files_are_read_instead_of_the_gz(fake_mnist):
    folder = fake_mnist / "mnist"
    packed = load_dataset("mnist", "test", data_dir=str(fake_mnist)).tensors[0]
    _unpack(folder)
    for gz in folder.glob("*.gz"):
        gz.unlink()
    assert not list(folder.glob("*.gz"))
    unpacked = load_dataset("mnist", "test", data_dir=str(fake_mnist)).tensors[0]
    assert torch.equal(packed, unpacked)
    assert len(load_dataset("mnist", "train", data_dir=str(fake_mnist))) == 100


def test_unpacked_idx_file_beside_the_gz_is_used_only_when_the_gz_is_missing(fake_mnist):
    folder = fake_mnist / "mnist"
    _unpack(folder, {"t10k-labels-idx1-ubyte.gz"})
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    assert len(load_dataset("mnist", "test", data_dir=str(fake_mnist))) == 40
    # a damaged unpacked file is caught by its header / length (no published checksum applies)
    raw = folder / "t10k-labels-idx1-ubyte"
    raw.write_bytes(raw.read_bytes()[:-3])
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_dataset("mnist", "test", data_dir=str(fake_mnist))


def test_missing_file_names_both_the_gz_and_the_unpacked_name(fake_mnist):
    (fake_mnist / "mnist" / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz: file not found \(or unpacked, "
                                        r"t10k-images-idx3-ubyte\)"):
        load_dataset("mnist", "test", data_dir=str(fake_mnist))


@pytest.mark.parametrize("damage", ["cut_gz", "bad_length_unpacked", "checksum"])
def test_a_bad_file_in_the_users_own_folder_is_never_to_be_deleted(fake_mnist, damage, capsys):
    folder = fake_mnist / "mnist"
    if damage == "cut_gz":     # sha256 no longer matches either: the published checksum speaks first
        f = folder / "t10k-images-idx3-ubyte.gz"
        f.write_bytes(f.read_bytes()[:-10])
    elif damage == "checksum":
        f = folder / "t10k-labels-idx1-ubyte.gz"
        f.write_bytes(gzip.compress(gzip.decompress(f.read_bytes())[:-1] + b"\x07"))
    else:
        _unpack(folder, {"t10k-images-idx3-ubyte.gz"})
        (folder / "t10k-images-idx3-ubyte.gz").unlink()
        f = folder / "t10k-images-idx3-ubyte"
        f.write_bytes(f.read_bytes()[:-100])
    assert main(["data", "info", "mnist", "--data-dir", str(fake_mnist), "--load"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and f.name in err
    assert "Delete" not in err and "delete" not in err
    assert "genlab data info mnist" in err and "replace it" in err
    assert f.exists()


def test_a_bad_file_in_genlabs_own_cache_may_be_deleted_and_fetched_again(fake_mnist, monkeypatch):
    import shutil
    cache = idx.cache_dir() / "mnist"
    shutil.rmtree(cache, ignore_errors=True)
    shutil.copytree(fake_mnist / "mnist", cache)
    try:
        f = cache / "t10k-images-idx3-ubyte.gz"
        f.write_bytes(f.read_bytes()[:-10])
        with pytest.raises(DataError, match="Delete it and run again to download a fresh copy"):
            load_dataset("mnist", "test")
    finally:
        shutil.rmtree(cache)
