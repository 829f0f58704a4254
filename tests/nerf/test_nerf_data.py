"""Scene loaders on generated folders (bad ones included) and the offline scene's exact ray caster."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from genlab.errors import DataError
from genlab.families.nerf import data as scenes
from genlab.families.nerf.experiments import LEGO

pytestmark = pytest.mark.unit


# ----------------------------------------------------------------- the exact ray caster
def test_caster_hits_spheres_and_boxes_where_geometry_says():
    s = scenes.Sphere((0.2, -0.1, 0.3), 0.5, (1, 0, 0))
    o = np.array([[3.0, 2.0, 1.0]])
    d = (np.array(s.center) - o) / np.linalg.norm(np.array(s.center) - o)
    t, n = scenes.intersect_sphere(o, d, s)
    assert np.isclose(t[0], np.linalg.norm(np.array(s.center) - o) - 0.5)
    assert np.allclose(n[0], -d[0])
    b = scenes.Box((-1.0, -1.0, -1.0), (1.0, 2.0, 0.5), (0, 1, 0))
    t, n = scenes.intersect_box(np.array([[0.3, 0.4, 5.0]]), np.array([[0.0, 0.0, -1.0]]), b)
    assert np.isclose(t[0], 4.5) and np.allclose(n[0], [0, 0, 1])
    # from inside a box the exit is not a hit of its outside surface
    t, _ = scenes.intersect_box(np.zeros((1, 3)), np.array([[1.0, 0, 0]]), b)
    assert np.isinf(t[0])


def _inside(p):
    """Point membership in the union of the scene's shapes (no ray math)."""
    out = np.zeros(p.shape[:-1], dtype=bool)
    for s in scenes.SHAPES:
        if isinstance(s, scenes.Sphere):
            out |= np.linalg.norm(p - np.array(s.center), axis=-1) <= s.radius
        else:
            out |= np.all((p >= np.array(s.lo)) & (p <= np.array(s.hi)), axis=-1)
    return out


def test_caster_depth_matches_marching_through_the_shapes():
    rng = np.random.default_rng(0)
    eyes = rng.normal(size=(300, 3))
    eyes = 4.0 * eyes / np.linalg.norm(eyes, axis=-1, keepdims=True)
    targets = rng.uniform(-0.9, 0.9, size=(300, 3))
    d = (targets - eyes) / np.linalg.norm(targets - eyes, axis=-1, keepdims=True)
    _, t = scenes.cast(eyes, d)
    ts = np.linspace(0, 8, 8001)
    p = eyes[:, None] + ts[None, :, None] * d[:, None]
    inside = _inside(p)
    first = np.where(inside.any(-1), ts[np.argmax(inside, -1)], np.inf)
    hit = np.isfinite(first)
    assert np.array_equal(hit, np.isfinite(t))
    assert hit.sum() > 150 and np.abs(first[hit] - t[hit]).max() < 2e-3


def test_synthetic_scene_is_deterministic_and_consistent():
    cfg = scenes.SyntheticSceneConfig(size=16, views=3, supersample=1)
    a, b = scenes.load_synthetic_scene(cfg, "train"), scenes.load_synthetic_scene(cfg, "train")
    assert a.images.shape == (3, 16, 16, 3) and torch.equal(a.images, b.images)
    test = scenes.load_synthetic_scene(cfg, "test")
    assert len(test.images) == 8 and not torch.allclose(test.poses[:3], a.poses)
    o, d, rgb = a.rays()
    # a ray that misses everything shows the background; a hit shows the shaded albedo at the caster's depth
    depth = a.depth.reshape(-1)
    miss = torch.isinf(depth)
    assert miss.any() and (~miss).any()
    assert torch.allclose(rgb[miss], torch.ones(int(miss.sum()), 3))
    hit_pts = (o + depth[:, None] * d)[~miss].double().numpy()
    assert _inside(hit_pts + 1e-4 * d[~miss].double().numpy()).all()


# ----------------------------------------------------------------- Blender layout
def _write_blender(root, n=5, size=8, splits=("train",), seed=0):
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for split in splits:
        (root / split).mkdir(exist_ok=True)
        frames = []
        for i in range(n):
            rgba = rng.integers(0, 256, (size, size, 4), dtype=np.uint8)
            Image.fromarray(rgba, "RGBA").save(root / split / f"r_{i}.png")
            pose = np.eye(4)
            pose[:3, 3] = [0.0, 0.0, 4.0 + i + 100 * ("train", "val", "test").index(split)]   # a pose per view
            frames.append({"file_path": f"./{split}/r_{i}", "rotation": 0.1, "transform_matrix": pose.tolist()})
        (root / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": 0.69, "frames": frames}))
    return root


def test_blender_loader_composites_downscales_and_holds_out(tmp_path):
    root = _write_blender(tmp_path / "scene", n=5, size=8)
    cfg = scenes.BlenderConfig(scene_dir=str(root), background="white", downscale=2, holdout="r_1,4")
    train, test = scenes.load_blender(cfg, "train"), scenes.load_blender(cfg, "test")
    assert train.names == ["r_0", "r_2"] and test.names == ["r_1", "r_4"]
    assert scenes.load_blender(cfg, "val").names == ["r_3"]       # the last view that is not a test view
    assert train.images.shape == (2, 4, 4, 3)
    raw = np.asarray(Image.open(root / "train" / "r_2.png"), dtype=np.float64) / 255
    prem = raw[..., :3] * raw[..., 3:]
    expect = prem.reshape(4, 2, 4, 2, 3).mean((1, 3)) + (1 - raw[..., 3].reshape(4, 2, 4, 2).mean((1, 3)))[..., None]
    assert np.allclose(train.images[1].numpy(), expect, atol=1e-6)
    assert abs(train.K[0, 0].item() - 2.0 / np.tan(0.345)) < 1e-9
    assert torch.allclose(train.poses[1, 2, 3], torch.tensor(6.0))
    black = scenes.load_blender(scenes.BlenderConfig(scene_dir=str(root), background="black"), "train")
    assert np.allclose(black.images[0].numpy(),
                       (lambda r: r[..., :3] * r[..., 3:])(np.asarray(Image.open(root / "train" / "r_0.png")) / 255),
                       atol=1e-6)
    assert black.names == ["r_0", "r_1", "r_2"]                 # default: test the last 10%, val the 10% before
    assert scenes.load_blender(scenes.BlenderConfig(scene_dir=str(root)), "val").names == ["r_3"]


def test_blender_loader_uses_its_own_splits(tmp_path):
    root = _write_blender(tmp_path / "scene", n=3, splits=("train", "val", "test"))
    cfg = scenes.BlenderConfig(scene_dir=str(root))
    assert len(scenes.load_blender(cfg, "train").images) == 3
    assert scenes.load_blender(cfg, "val").names == ["r_0", "r_1", "r_2"]


def _one_line_error(fn, *needles):
    with pytest.raises(DataError) as e:
        fn()
    msg = str(e.value)
    assert "\n" not in msg and all(k in msg for k in needles), msg


def test_blender_loader_rejects_bad_folders(tmp_path):
    def load(root, **kw):
        return lambda: scenes.load_blender(scenes.BlenderConfig(scene_dir=str(root), **kw), "train")
    _one_line_error(load(tmp_path / "nowhere"), "not found")
    _one_line_error(lambda: scenes.load_blender(scenes.BlenderConfig(), "train"), "--scene-dir")
    root = _write_blender(tmp_path / "a")
    (root / "train" / "r_2.png").unlink()
    _one_line_error(load(root), "r_2.png", "not found")
    root = _write_blender(tmp_path / "b")
    (root / "train" / "r_1.png").write_bytes(b"not a png at all")
    _one_line_error(load(root), "r_1.png", "cannot read")
    root = _write_blender(tmp_path / "c")
    (root / "transforms_train.json").write_text('{"camera_angle_x": 0.6, "frames": [')
    _one_line_error(load(root), "transforms_train.json", "malformed JSON")
    root = _write_blender(tmp_path / "d")
    meta = json.loads((root / "transforms_train.json").read_text())
    meta["frames"][2]["transform_matrix"] = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    (root / "transforms_train.json").write_text(json.dumps(meta))
    _one_line_error(load(root), "frame 2", "shape (3, 3)")
    root = _write_blender(tmp_path / "e")
    _one_line_error(load(root, holdout="r_77"), "r_77", "--holdout")
    _one_line_error(load(root, val_holdout="9"), "index 9", "--val-holdout")
    _one_line_error(load(root, holdout="0-2", val_holdout="3,4"), "all 5 views")
    _one_line_error(load(root, holdout="0-3"), "none for the val split", "--val-holdout")
    _one_line_error(load(root, holdout="1,2", val_holdout="2"), "view 2", "both a validation and a test view")


# ----------------------------------------------------------------- tiny-NeRF npz
def _write_npz(path, n=20, size=6, alphas=True, **override):
    rng = np.random.default_rng(1)
    arrays = {"images": rng.random((n, size, size, 3)).astype(np.float32) * 0.5,
              "poses": np.tile(np.eye(4, dtype=np.float32), (n, 1, 1)), "focal": np.float64(7.5)}
    if alphas:
        arrays["alphas"] = rng.random((n, size, size)).astype(np.float32)
    arrays.update(override)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return path


def test_tiny_nerf_loader_holds_out_and_composites(tmp_path):
    path = _write_npz(tmp_path / "tiny.npz")
    train = scenes.load_tiny_nerf(scenes.TinyNerfConfig(file=str(path)), "train")
    test = scenes.load_tiny_nerf(scenes.TinyNerfConfig(file=str(path)), "test")
    assert len(train.images) == 16 and test.names == ["18", "19"] and train.background == (0.0, 0.0, 0.0)
    assert train.K[0, 0].item() == 7.5 and train.K[0, 2].item() == 3.0
    white = scenes.load_tiny_nerf(scenes.TinyNerfConfig(file=str(path), background="white", holdout="15-19",
                                                        val_holdout="0-9"), "val")
    z = np.load(path)
    assert np.allclose(white.images.numpy(), np.clip(z["images"][:10] + 1 - z["alphas"][:10, ..., None], 0, 1))
    assert torch.equal(white.alpha, torch.from_numpy(z["alphas"][:10]))


def test_tiny_nerf_loader_rejects_bad_files(tmp_path):
    def load(path, **kw):
        return lambda: scenes.load_tiny_nerf(scenes.TinyNerfConfig(file=str(path), **kw), "train")
    _one_line_error(load(tmp_path / "none.npz"), "not found")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 truncated")
    _one_line_error(load(bad), "cannot read")
    _one_line_error(load(_write_npz(tmp_path / "a.npz", focal=None)), "'focal'")
    _one_line_error(load(_write_npz(tmp_path / "b.npz", poses=np.zeros((20, 4, 3)))), "poses have shape")
    _one_line_error(load(_write_npz(tmp_path / "c.npz", alphas=False), background="white"), "alphas")


# ----------------------------------------------------------------- disjoint splits (issue 21, item 3)
def _splits(load) -> dict[str, scenes.Scene]:
    return {s: load(s) for s in scenes.SPLIT_NAMES}


def _assert_disjoint(splits: dict[str, scenes.Scene], by_name: bool = True):
    """No view in two splits: neither a view name (an index into one list of views) nor a camera pose."""
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        A, B = splits[a], splits[b]
        assert len(A.images) and len(B.images)
        if by_name:
            assert not set(A.names) & set(B.names), (a, b, sorted(set(A.names) & set(B.names)))
        same_pose = (A.poses[:, None] - B.poses[None]).abs().flatten(2).amax(-1) < 1e-6     # [NA, NB]
        assert not same_pose.any(), (a, b)


def test_tiny_nerf_lego_style_splits_are_disjoint(tmp_path):
    n = 100
    poses = np.tile(np.eye(4, dtype=np.float32), (n, 1, 1))
    poses[:, 2, 3] = 4.0 + np.arange(n)                                     # one camera per view
    path = _write_npz(tmp_path / "lego.npz", n=n, size=4, poses=poses)
    lego = {k: v for k, v in LEGO.items() if k != "file"}                    # nerf-lego's own data options
    for options, val in ((lego, list(range(80, 90))), ({"holdout": "90-99"}, list(range(80, 90))),
                         ({}, list(range(80, 90))),
                         ({"holdout": "0-9", "val_holdout": "10-14"}, list(range(10, 15)))):
        splits = _splits(lambda s: scenes.load_tiny_nerf(scenes.TinyNerfConfig(file=str(path), **options), s))
        _assert_disjoint(splits)
        assert splits["val"].names == [str(i) for i in val]
        assert sum(len(x.images) for x in splits.values()) == n                 # every view in exactly one split
    assert splits["test"].names == [str(i) for i in range(10)]


def test_blender_splits_are_disjoint_with_and_without_their_own_files(tmp_path):
    for files in (("train",), ("train", "test"), ("train", "val", "test")):
        root = _write_blender(tmp_path / "-".join(files), n=10, size=4, splits=files)
        splits = _splits(lambda s, r=root: scenes.load_blender(scenes.BlenderConfig(scene_dir=str(r)), s))
        # names repeat across transforms files (r_0 in train and in test); poses do not
        _assert_disjoint(splits, by_name=len(files) == 1)
        for split in ("val", "test"):
            own = split in files
            assert len(splits[split].images) == (10 if own else 1)
        assert len(splits["train"].images) == 10 - sum(s not in files for s in ("val", "test"))


def test_synthetic_scene_splits_are_disjoint():
    for seed in (0, 1):
        cfg = scenes.SyntheticSceneConfig(size=8, views=6, supersample=1, seed=seed)
        _assert_disjoint(_splits(lambda s, c=cfg: scenes.load_synthetic_scene(c, s)), by_name=False)
