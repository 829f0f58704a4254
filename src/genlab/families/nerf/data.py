"""Posed views of 3-D scenes for neural radiance fields (Mildenhall et al. 2020, Sec. 4: multi-view RGB
images with camera intrinsics and extrinsics).

Three sources, one :class:`Scene` (images [N, H, W, 3] in [0, 1], camera-to-world poses [N, 4, 4] in the
OpenGL convention of ``genlab.maths.cameras``, intrinsics K, the depth range [near, far] and the
background colour the images were composited over):

* ``blender``: a folder in the NeRF-synthetic layout (Mildenhall et al. 2020): ``transforms_{train,val,
  test}.json`` (``camera_angle_x`` and ``frames`` of ``file_path`` + 4x4 ``transform_matrix``) beside
  RGBA PNGs, composited over a white or black background after an exact K x K box downscale of the
  premultiplied colours. A split whose JSON is missing is made of held-out training views
  (``--holdout`` for test, ``--val-holdout`` for val; never the same views).
* ``tiny-nerf``: the ``.npz`` of the tiny-NeRF notebook: ``images`` [N, H, W, 3], ``poses`` [N, 4, 4],
  ``focal``, and optionally ``alphas`` [N, H, W]; the last 10% of the views are test, the 10% before them
  val (``--holdout``, ``--val-holdout``), the rest train: three disjoint sets of views.
* ``synthetic-scene``: generated here, offline: coloured spheres and boxes on a checkered slab, lit by a
  directional light, seen from cameras on the upper hemisphere, rendered by an exact analytic ray caster
  (ray-sphere roots and ray-box slabs) that shares no code with the NeRF renderer.

A bad folder or file (missing frames, an unreadable PNG, malformed JSON, a pose of the wrong shape)
raises ``DataError`` with one line naming the file and what to do.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from genlab.config import field, require
from genlab.data.batches import PermutationBatches
from genlab.data.registry import DataInfo, register_dataset
from genlab.errors import DataError
from genlab.maths.cameras import camera_rays, focal_from_fov, intrinsics, look_at

SPLIT_NAMES = ("train", "val", "test")
BACKGROUNDS = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0)}


# ----------------------------------------------------------------- configs
@dataclass
class BlenderConfig:
    scene_dir: str | None = field(None, "folder with transforms_{train,val,test}.json and the PNGs "
                                           "(e.g. nerf_synthetic/lego)")
    background: Literal["white", "black"] = field("white", "colour the RGBA images are composited over")
    downscale: int = field(1, "shrink the images K times (exact K x K box average; 8 turns 800 px into 100 px)")
    holdout: str = field("", "training views held out as the test split when transforms_test.json is missing: "
                             "indices, ranges (90-99) or names (r_90), comma-separated; empty: the last 10% of views")
    val_holdout: str = field("", "training views held out as the validation split when transforms_val.json is "
                                 "missing (as --holdout); empty: the 10% of the views just before the test views")
    near: float = field(2.0, "near bound t_n of the rays")
    far: float = field(6.0, "far bound t_f of the rays")
    limit: int | None = field(None, "use at most this many views per split (quick runs)")

    def validate(self):
        require(self.downscale >= 1, f"downscale must be >= 1, got {self.downscale}")
        require(0 <= self.near < self.far, f"need 0 <= near < far, got near={self.near}, far={self.far}")
        require(self.limit is None or self.limit > 0, f"limit must be positive, got {self.limit}")


@dataclass
class TinyNerfConfig:
    file: str | None = field(None, "the .npz with images [N,H,W,3], poses [N,4,4], focal (and optional alphas [N,H,W])")
    data_dir: str | None = field(None, "folder where a relative --file is looked up (also in its nerf/ subfolder)")
    background: Literal["auto", "white", "black"] = field(
        "auto", "auto: as stored; white/black: composite with the file's alphas (needs alphas)")
    holdout: str = field("", "views held out as the test split: indices or ranges (90-99), comma-separated; "
                             "empty: the last 10% of the views")
    val_holdout: str = field("", "views held out as the validation split (as --holdout, none of them test views); "
                                 "empty: the 10% of the views just before the test views (80-89 of 100)")
    near: float = field(2.0, "near bound t_n of the rays")
    far: float = field(6.0, "far bound t_f of the rays")
    limit: int | None = field(None, "use at most this many views per split (quick runs)")

    def validate(self):
        require(0 <= self.near < self.far, f"need 0 <= near < far, got near={self.near}, far={self.far}")
        require(self.limit is None or self.limit > 0, f"limit must be positive, got {self.limit}")


@dataclass
class SyntheticSceneConfig:
    size: int = field(64, "image height and width in pixels")
    views: int = field(40, "training views (val gets 4 and test 8 more, from other directions)")
    supersample: int = field(2, "rays per pixel side averaged by the ground-truth ray caster (anti-aliasing)")
    background: Literal["white", "black"] = field("white", "background colour")
    seed: int = field(0, "seed of the camera positions")

    def validate(self):
        require(8 <= self.size <= 1024, f"size must be in 8..1024, got {self.size}")
        require(self.views >= 1, f"views must be >= 1, got {self.views}")
        require(1 <= self.supersample <= 8, f"supersample must be in 1..8, got {self.supersample}")


@dataclass
class Scene:
    """Posed views of one scene, one split."""
    images: torch.Tensor              # [N, H, W, 3] float32 in [0, 1]
    poses: torch.Tensor               # [N, 4, 4] float32 camera-to-world
    K: torch.Tensor                   # [3, 3] float64 pinhole intrinsics
    near: float
    far: float
    background: tuple[float, float, float]
    names: list[str] = dc_field(default_factory=list)
    depth: torch.Tensor | None = None    # [N, H, W] ground-truth ray distance (synthetic scene only; inf: missed)
    alpha: torch.Tensor | None = None    # [N, H, W] the object's opacity in [0, 1], where the data has alpha

    @property
    def height(self) -> int:
        return self.images.shape[1]

    @property
    def width(self) -> int:
        return self.images.shape[2]

    def rays(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every pixel as a ray: (origins, directions, colours), each [N H W, 3] float32."""
        o, d = camera_rays(self.K, self.poses.double(), self.height, self.width)         # [N, H, W, 3] each
        o, d = o.float(), d.float()
        return (o.reshape(-1, 3), d.reshape(-1, 3),                                        # [N, H, W, 3] -> [N H W, 3]
                self.images.reshape(-1, 3))                                                # [N, H, W, 3] -> [N H W, 3]

    def subset(self, index) -> Scene:
        index = list(index)
        return Scene(self.images[index], self.poses[index], self.K, self.near, self.far, self.background,
                     [self.names[i] for i in index] if self.names else [],
                     None if self.depth is None else self.depth[index],
                     None if self.alpha is None else self.alpha[index])


# ----------------------------------------------------------------- held-out views
def parse_views(spec: str, names: list[str], what: str, flag: str = "--holdout",
                taken: list[int] = ()) -> list[int]:
    """Indices named by ``spec`` ("90-99,3,r_5"); empty: the last 10% (at least one) of the views of ``names``
    that are not ``taken`` (so the default validation views sit just before the test views: 80-89 of 100)."""
    n = len(names)
    if not spec.strip():
        free = [i for i in range(n) if i not in set(taken)]
        k = max(1, round(0.1 * n))
        return free[-k:] if len(free) > k else []
    out: list[int] = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        if re.fullmatch(r"\d+-\d+", part):
            a, b = map(int, part.split("-"))
            out += list(range(a, b + 1))
        elif part.isdigit():
            out.append(int(part))
        elif part in names:
            out.append(names.index(part))
        else:
            raise DataError(f"{what}: held-out view {part!r} is neither an index nor a view name "
                            f"(names look like {names[0]!r}); fix {flag}")
    bad = [i for i in out if not 0 <= i < n]
    if bad:
        raise DataError(f"{what}: held-out view index {bad[0]} is out of range 0..{n - 1}; fix {flag}")
    return sorted(set(out))


def held_out_splits(names: list[str], test_spec: str, val_spec: str, what: str,
                    held: tuple[str, ...] = ("val", "test")) -> dict[str, list[int]]:
    """Disjoint view indices of train, val and test, cut from one list of views: the splits in ``held``
    are held out (test by ``--holdout``, val by ``--val-holdout``), train is the rest. A split not in
    ``held`` (it has its own file) gets no views here."""
    n = len(names)
    test = parse_views(test_spec, names, what, "--holdout") if "test" in held else []
    val = parse_views(val_spec, names, what, "--val-holdout", taken=test) if "val" in held else []
    both = sorted(set(val) & set(test))
    if both:
        raise DataError(f"{what}: view {both[0]} is both a validation and a test view; --val-holdout and "
                        "--holdout must name different views")
    for split, views in (("val", val), ("test", test)):
        if split in held and not views:
            raise DataError(f"{what}: {n} views leave none for the {split} split; "
                            f"pass --{'val-holdout' if split == 'val' else 'holdout'} or use more views")
    rest = [i for i in range(n) if i not in set(val) | set(test)]
    if not rest:
        raise DataError(f"{what}: --holdout and --val-holdout would hold out all {n} views; leave some for "
                        "training")
    return {"train": rest, "val": val, "test": test}


# ----------------------------------------------------------------- image helpers
def box_downscale(x: np.ndarray, k: int) -> np.ndarray:
    """Average exact k x k blocks of [H, W, C] (the edge rows/columns that do not fill a block are cut)."""
    if k == 1:
        return x
    H, W, C = x.shape
    h, w = H // k, W // k
    x = x[: h * k, : w * k].reshape(h, k, w, k, C)             # [H, W, C] -> [h, k, w, k, C]
    return x.mean(axis=(1, 3))                                 # [h, k, w, k, C] -> [h, w, C]


def composite(rgba: np.ndarray, background) -> np.ndarray:
    """Premultiplied RGBA [H, W, 4] over a background colour: rgb + (1 - a) b."""
    return rgba[..., :3] + (1.0 - rgba[..., 3:4]) * np.asarray(background, dtype=rgba.dtype)


def read_rgba(path: Path) -> np.ndarray:
    """A PNG as premultiplied RGBA float32 [H, W, 4] in [0, 1] (opaque when it has no alpha)."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            im.load()
            arr = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found; the scene folder is incomplete") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: cannot read the image ({e}); replace the file") from None
    arr[..., :3] *= arr[..., 3:4]
    return arr


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: malformed JSON at line {e.lineno}, column {e.colno} ({e.msg}); fix or "
                        "replace the file") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text file; replace it with the scene's transforms JSON") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object with camera_angle_x and frames")
    return data


def as_pose(m, where: str) -> np.ndarray:
    """A 4x4 camera-to-world matrix from a nested list (3x4 gets the row 0 0 0 1)."""
    try:
        a = np.asarray(m, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{where}: transform_matrix is not a matrix of numbers") from None
    if a.shape == (3, 4):
        a = np.vstack([a, [0.0, 0.0, 0.0, 1.0]])
    if a.shape != (4, 4):
        raise DataError(f"{where}: transform_matrix has shape {a.shape}, expected 4x4 (camera-to-world)")
    if not np.all(np.isfinite(a)):
        raise DataError(f"{where}: transform_matrix has non-finite entries")
    return a


def finite_number(value, where: str, name: str, advice: str, positive: bool = True, below: float | None = None):
    """``value`` as a float, or DataError naming the file and field: a number (not a string, null or bool),
    finite, > 0 when ``positive`` and < ``below`` when given."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    x = float(value) if ok else math.nan
    if not (ok and math.isfinite(x) and (not positive or x > 0) and (below is None or x < below)):
        need = "a finite number" + (" > 0" if positive else "") + (f" and < {below:.6g}" if below else "")
        raise DataError(f"{where}: '{name}' is {json.dumps(value) if ok or value is None else repr(value)}, "
                        f"expected {need}; {advice}")
    return x


# ----------------------------------------------------------------- the Blender / NeRF-synthetic layout
def _blender_frames(folder: Path, split: str) -> tuple[dict, list[dict]]:
    path = folder / f"transforms_{split}.json"
    meta = read_json(path)
    frames = meta.get("frames")
    if not isinstance(frames, list) or not frames:
        raise DataError(f"{path}: no 'frames' list; a NeRF-synthetic transforms file lists its views there")
    bad = next((i for i, f in enumerate(frames) if not isinstance(f, dict) or "file_path" not in f
                or "transform_matrix" not in f), None)
    if bad is not None:
        raise DataError(f"{path} frame {bad}: a frame needs 'file_path' and 'transform_matrix'")
    if "camera_angle_x" not in meta and "fl_x" not in meta:
        raise DataError(f"{path}: no 'camera_angle_x' (nor 'fl_x'); the field of view is needed for the rays")
    return meta, frames


def load_blender(cfg: BlenderConfig, split: str) -> Scene:
    """One split of a NeRF-synthetic folder, composited over ``cfg.background``."""
    if not cfg.scene_dir:
        raise DataError("blender: no scene folder given; pass --scene-dir DIR (a folder with transforms_train.json)")
    folder = Path(cfg.scene_dir).expanduser()
    if not folder.is_dir():
        raise DataError(f"{folder}: scene folder not found; pass --scene-dir DIR in the NeRF-synthetic layout")
    if not (folder / "transforms_train.json").exists():
        raise DataError(f"{folder}: no transforms_train.json; pass a folder in the NeRF-synthetic layout")
    own = folder / f"transforms_{split}.json"
    source = split if own.exists() else "train"
    meta, frames = _blender_frames(folder, source)
    names = [Path(str(f.get("file_path", ""))).name for f in frames]
    index = list(range(len(frames)))
    if source == "train":
        missing = tuple(s for s in ("val", "test") if not (folder / f"transforms_{s}.json").exists())
        if missing:   # held-out training views, disjoint per split, stand in for the missing splits
            index = held_out_splits(names, cfg.holdout, cfg.val_holdout, f"{folder / 'transforms_train.json'}",
                                    missing)[split]
    if cfg.limit:
        index = index[: cfg.limit]
    images, poses, alphas = [], [], []
    for i in index:
        frame = frames[i]
        where = f"{folder / f'transforms_{source}.json'} frame {i}"
        if not isinstance(frame, dict) or "file_path" not in frame or "transform_matrix" not in frame:
            raise DataError(f"{where}: a frame needs 'file_path' and 'transform_matrix'")
        rel = str(frame["file_path"])
        path = folder / rel
        if path.suffix.lower() != ".png":
            path = path.with_name(path.name + ".png")
        if not path.exists():
            raise DataError(f"{path}: image of {where} not found; the scene folder is incomplete")
        rgba = box_downscale(read_rgba(path), cfg.downscale)
        images.append(composite(rgba, BACKGROUNDS[cfg.background]).astype(np.float32))
        alphas.append(rgba[..., 3].astype(np.float32))
        poses.append(as_pose(frame["transform_matrix"], where))
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise DataError(f"{folder}: the images of split {split!r} differ in size {sorted(shapes)}; "
                        "all views need one size")
    H, W = images[0].shape[:2]
    where = str(folder / f"transforms_{source}.json")
    if "fl_x" in meta:   # instant-NGP style intrinsics, in pixels of the original image
        s = cfg.downscale
        fix = "give the focal length and principal point in pixels"
        fx = finite_number(meta["fl_x"], where, "fl_x", fix)
        fy = finite_number(meta.get("fl_y", fx), where, "fl_y", fix)
        cx = finite_number(meta.get("cx", W * s / 2), where, "cx", fix, positive=False)
        cy = finite_number(meta.get("cy", H * s / 2), where, "cy", fix, positive=False)
        K = intrinsics(fx / s, W, H, fy / s, cx / s, cy / s)
    else:
        fov = finite_number(meta["camera_angle_x"], where, "camera_angle_x",
                            "give the horizontal field of view in radians (NeRF-synthetic: 0.6911)", below=math.pi)
        K = intrinsics(focal_from_fov(fov, W), W, H)
    return Scene(torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(poses)).float(), K,
                 cfg.near, cfg.far, BACKGROUNDS[cfg.background], [names[i] for i in index],
                 alpha=torch.from_numpy(np.stack(alphas)))


# ----------------------------------------------------------------- the tiny-NeRF .npz
def load_tiny_nerf(cfg: TinyNerfConfig, split: str) -> Scene:
    """One split of a tiny-NeRF ``.npz`` (disjoint held-out views are val and test)."""
    if not cfg.file:
        raise DataError("tiny-nerf: no file given; pass --file PATH.npz (images, poses, focal)")
    path = Path(cfg.file).expanduser()
    if cfg.data_dir and not path.is_absolute():
        root = Path(cfg.data_dir).expanduser()
        path = next((p for p in (root / path, root / "nerf" / path) if p.is_file()), root / path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; pass --file PATH.npz (or a name inside --data-dir)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:   # zip and format errors of numpy come in many types
        raise DataError(f"{path}: cannot read the .npz ({type(e).__name__}: {e}); "
                        "the file is truncated or not an npz") from None
    for key in ("images", "poses", "focal"):
        if key not in arrays:
            raise DataError(f"{path}: no '{key}' array (found {', '.join(sorted(arrays)) or 'none'}); "
                            "a tiny-NeRF file holds images, poses and focal")
    images, poses = arrays["images"], arrays["poses"]
    if images.ndim != 4 or images.shape[-1] not in (3, 4):
        raise DataError(f"{path}: images have shape {images.shape}, expected [N, H, W, 3]")
    n = images.shape[0]
    if n < 3:
        raise DataError(f"{path}: {n} view(s); a scene needs at least 3 (training, validation and test views)")
    if poses.shape == (n, 3, 4):
        poses = np.concatenate([poses, np.broadcast_to([[[0.0, 0.0, 0.0, 1.0]]], (n, 1, 4))], axis=1)
    if poses.shape != (n, 4, 4):
        raise DataError(f"{path}: poses have shape {poses.shape}, expected [{n}, 4, 4] (one camera-to-world per image)")
    if not np.issubdtype(images.dtype, np.number) or not np.issubdtype(poses.dtype, np.number):
        raise DataError(f"{path}: images and poses must be numeric arrays (got {images.dtype}, {poses.dtype})")
    images = images.astype(np.float32)
    for key, a in (("images", images), ("poses", poses), ("alphas", arrays.get("alphas"))):
        if a is not None and np.issubdtype(a.dtype, np.number) and not np.all(np.isfinite(a)):
            view = int(np.argwhere(~np.isfinite(a))[0][0])
            raise DataError(f"{path}: '{key}' has non-finite values (NaN or inf) in view {view}; "
                            "repair or drop that view")
    if images.max() > 1.0 + 1e-6:
        images = images / 255.0
    alphas = arrays.get("alphas")
    if images.shape[-1] == 4:
        images, alphas = images[..., :3] * images[..., 3:], images[..., 3]
    if cfg.background == "auto":
        background = (0.0, 0.0, 0.0) if alphas is not None else _guess_background(images)
    else:
        if alphas is None:
            raise DataError(f"{path}: no 'alphas' array to composite over {cfg.background}; use --background auto")
        if alphas.shape != images.shape[:3]:
            raise DataError(f"{path}: alphas have shape {alphas.shape}, expected {images.shape[:3]}")
        background = BACKGROUNDS[cfg.background]
        images = images + (1.0 - alphas[..., None]) * np.asarray(background, dtype=np.float32)
    focal = np.asarray(arrays["focal"]).reshape(-1)
    focal = finite_number(focal[0] if focal.size == 1 else str(focal.tolist()), str(path), "focal",
                          "store the focal length in pixels as one number")
    names = [str(i) for i in range(n)]
    index = held_out_splits(names, cfg.holdout, cfg.val_holdout, str(path))[split]
    if cfg.limit:
        index = index[: cfg.limit]
    H, W = images.shape[1:3]
    return Scene(torch.from_numpy(np.ascontiguousarray(images[index])).float().clamp(0, 1),
                 torch.from_numpy(np.ascontiguousarray(poses[index])).float(),
                 intrinsics(focal, W, H), cfg.near, cfg.far, background, [names[i] for i in index],
                 alpha=torch.from_numpy(np.ascontiguousarray(alphas[index])).float().clamp(0, 1)
                 if alphas is not None and alphas.shape == images.shape[:3] else None)


def _guess_background(images: np.ndarray) -> tuple[float, float, float]:
    """White or black: whichever is nearer the median colour of the images' border pixels."""
    border = np.concatenate([images[:, 0].reshape(-1, 3), images[:, -1].reshape(-1, 3),
                             images[:, :, 0].reshape(-1, 3), images[:, :, -1].reshape(-1, 3)])
    return BACKGROUNDS["white"] if np.median(border) > 0.5 else BACKGROUNDS["black"]


# ----------------------------------------------------------------- the offline scene and its exact ray caster
@dataclass
class Sphere:
    center: tuple[float, float, float]
    radius: float
    color: tuple[float, float, float]


@dataclass
class Box:
    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    color: tuple[float, float, float]
    checker: float = 0.0          # > 0: a checkerboard of this cell size in x, y (colour halved on odd cells)


SHAPES = (
    Sphere((0.0, 0.0, 0.45), 0.45, (0.85, 0.2, 0.15)),
    Sphere((0.55, -0.5, 0.25), 0.25, (0.15, 0.35, 0.85)),
    Sphere((-0.35, 0.65, 0.3), 0.3, (0.95, 0.8, 0.2)),
    Box((-0.85, -0.75, 0.0), (-0.35, -0.25, 0.6), (0.2, 0.7, 0.3)),
    Box((0.35, 0.3, 0.0), (0.75, 0.7, 0.3), (0.7, 0.3, 0.8)),
    Box((-1.0, -1.0, -0.1), (1.0, 1.0, 0.0), (0.85, 0.85, 0.8), checker=0.25),
)
LIGHT = (0.4, -0.3, 0.866)        # direction towards the light (normalised in the caster)
AMBIENT = 0.35
SCENE_RADIUS = 4.0                # camera distance from the origin
SCENE_FOV = 0.6911112070083618    # the field of view of the NeRF-synthetic cameras


def intersect_sphere(o: np.ndarray, d: np.ndarray, s: Sphere) -> tuple[np.ndarray, np.ndarray]:
    """Nearest t > 0 of |o + t d - c| = r (unit d): t = -b -/+ sqrt(b^2 - |o - c|^2 + r^2), b = d.(o - c).

    inf where the ray misses."""
    oc = o - np.asarray(s.center)
    b = np.einsum("...i,...i->...", d, oc)
    disc = b * b - (np.einsum("...i,...i->...", oc, oc) - s.radius ** 2)
    root = np.sqrt(np.maximum(disc, 0.0))
    t0, t1 = -b - root, -b + root
    t = np.where(t0 > 1e-9, t0, np.where(t1 > 1e-9, t1, np.inf))
    t = np.where(disc >= 0, t, np.inf)
    normal = (o + np.where(np.isfinite(t), t, 0.0)[..., None] * d - np.asarray(s.center)) / s.radius
    return t, normal


def intersect_box(o: np.ndarray, d: np.ndarray, bx: Box) -> tuple[np.ndarray, np.ndarray]:
    """Nearest t > 0 of the axis-aligned box (slabs: t_enter = max_i min, t_exit = min_i max); inf if missed."""
    lo, hi = np.asarray(bx.lo), np.asarray(bx.hi)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d
        ta, tb = (lo - o) * inv, (hi - o) * inv
    ta, tb = np.nan_to_num(ta, nan=-np.inf), np.nan_to_num(tb, nan=np.inf)
    tmin, tmax = np.minimum(ta, tb), np.maximum(ta, tb)
    t_enter, t_exit = tmin.max(-1), tmax.min(-1)
    axis = tmin.argmax(-1)                                               # the face the ray enters through
    hit = (t_enter <= t_exit) & (t_enter > 1e-9)
    t = np.where(hit, t_enter, np.inf)
    normal = np.zeros(d.shape)
    sign = -np.sign(np.take_along_axis(d, axis[..., None], -1))[..., 0]
    np.put_along_axis(normal, axis[..., None], sign[..., None], -1)
    return t, normal


def cast(o: np.ndarray, d: np.ndarray, shapes=SHAPES, background=(1.0, 1.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """Exact colour and hit distance of rays [..., 3]: the nearest surface, shaded albedo (ambient + diffuse)."""
    best_t = np.full(d.shape[:-1], np.inf)
    color = np.broadcast_to(np.asarray(background, dtype=np.float64), d.shape).copy()
    light = np.asarray(LIGHT) / np.linalg.norm(LIGHT)
    for s in shapes:
        t, n = intersect_sphere(o, d, s) if isinstance(s, Sphere) else intersect_box(o, d, s)
        nearer = t < best_t
        if not nearer.any():
            continue
        albedo = np.broadcast_to(np.asarray(s.color), d.shape).copy()
        if isinstance(s, Box) and s.checker > 0:
            p = o + np.where(np.isfinite(t), t, 0.0)[..., None] * d
            odd = (np.floor(p[..., 0] / s.checker) + np.floor(p[..., 1] / s.checker)) % 2 == 1
            albedo[odd] *= 0.5
        shade = AMBIENT + (1 - AMBIENT) * np.clip(np.einsum("...i,i->...", n, light), 0.0, None)
        color[nearer] = (albedo * shade[..., None])[nearer]
        best_t = np.where(nearer, t, best_t)
    return color, best_t


def synthetic_cameras(n: int, seed: int) -> np.ndarray:
    """``n`` look-at poses on the upper hemisphere (elevation 15..75 degrees), radius SCENE_RADIUS, [n, 4, 4]."""
    rng = np.random.default_rng(seed)
    az = 2 * np.pi * rng.random(n)
    el = np.radians(15 + 60 * rng.random(n))
    eyes = SCENE_RADIUS * np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], -1)
    return np.stack([look_at(e, (0.0, 0.0, 0.2)).numpy() for e in eyes])


def render_views(poses: np.ndarray, size: int, supersample: int, background) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth of the offline scene: colours [N, H, W, 3] (supersampled) and centre-ray depths [N, H, W]."""
    K = intrinsics(focal_from_fov(SCENE_FOV, size), size, size)
    s = supersample
    K_fine = intrinsics(focal_from_fov(SCENE_FOV, size * s), size * s, size * s)
    images, depths = [], []
    for pose in poses:
        o, d = (a.numpy() for a in camera_rays(K_fine, torch.from_numpy(pose), size * s, size * s))
        rgb, _ = cast(o, d, background=background)
        images.append(box_downscale(rgb, s))
        o, d = (a.numpy() for a in camera_rays(K, torch.from_numpy(pose), size, size))
        depths.append(cast(o, d, background=background)[1])
    return np.stack(images).astype(np.float32), np.stack(depths).astype(np.float32)


def load_synthetic_scene(cfg: SyntheticSceneConfig, split: str) -> Scene:
    """One split of the offline scene: its own camera stream per split (train, val, test)."""
    counts = {"train": cfg.views, "val": 4, "test": 8}
    seed = cfg.seed * 3 + SPLIT_NAMES.index(split) + 1
    poses = synthetic_cameras(counts[split], seed)
    bg = BACKGROUNDS[cfg.background]
    images, depths = render_views(poses, cfg.size, cfg.supersample, bg)
    K = intrinsics(focal_from_fov(SCENE_FOV, cfg.size), cfg.size, cfg.size)
    return Scene(torch.from_numpy(images), torch.from_numpy(poses).float(), K,
                 SCENE_RADIUS - 1.8, SCENE_RADIUS + 1.8, bg, [f"{split}_{i}" for i in range(len(poses))],
                 torch.from_numpy(depths))


SCENE_BOUND = 1.5   # every object of the offline scene lies in [-1.5, 1.5]^3 (cameras are outside it)


# ----------------------------------------------------------------- the dataset objects the trainer sees
class RayData:
    """A split of posed views for the training loop: examples are views; training batches are rays.

    ``train_batches`` draws random rays (origins [B, 3], directions [B, 3], colours [B, 3]) from a fresh
    permutation of every pixel of every view each epoch; ``eval_batches`` yields one whole view per batch
    (its H W rays in row-major order), so the model can report PSNR/SSIM per view.
    """

    def __init__(self, scene: Scene, info: DataInfo):
        self.scene, self.info = scene, info
        self._rays = None

    def __len__(self) -> int:
        return len(self.scene.images)

    def rays(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self._rays is None:
            self._rays = self.scene.rays()
        return self._rays

    @property
    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.rays()

    def subset(self, index) -> RayData:
        views = range(len(self))[index] if isinstance(index, slice) else index
        return RayData(self.scene.subset(views), self.info)

    def train_batches(self, batch_size: int, seed: int, dist, **hints) -> PermutationBatches:
        return PermutationBatches(self.rays(), batch_size, seed, dist)

    def eval_batch_count(self, batch_size: int, **hints) -> int:
        return len(self)   # one batch per view

    def eval_batches(self, batch_size: int, **hints) -> Iterator[tuple[torch.Tensor, ...]]:
        o, d, rgb = self.rays()
        n = self.scene.height * self.scene.width
        for v in range(len(self)):
            yield o[v * n:(v + 1) * n], d[v * n:(v + 1) * n], rgb[v * n:(v + 1) * n]


def ray_data(scene: Scene, name: str, bound: float) -> RayData:
    """Wrap a scene with the DataInfo a NeRF model is built from (all of it JSON-able)."""
    centres = scene.poses[:, :3, 3].double()
    info = DataInfo(kind="rays", shape=(3,), extras={
        "dataset": name, "near": scene.near, "far": scene.far, "background": list(scene.background),
        "height": scene.height, "width": scene.width, "focal": float(scene.K[0, 0]),
        "bound": bound, "camera_radius": float(centres.norm(dim=-1).mean()),
        "target": [0.0, 0.0, 0.0], "up": [0.0, 0.0, 1.0]})
    return RayData(scene, info)


def _details(cfg) -> dict:
    return {"layout": "rays: (origins, unit directions, colours); eval: one whole view per batch"}


@register_dataset("blender", BlenderConfig, "a scene in the NeRF-synthetic layout (transforms_*.json + RGBA PNGs), "
                  "--scene-dir DIR", group="scenes", details=_details, kind="rays")
def blender(cfg: BlenderConfig, split: str) -> RayData:
    return ray_data(load_blender(cfg, split), "blender", 1.5)


@register_dataset("tiny-nerf", TinyNerfConfig, "the tiny-NeRF .npz (images, poses, focal), --file PATH.npz",
                  group="scenes", details=_details, kind="rays")
def tiny_nerf(cfg: TinyNerfConfig, split: str) -> RayData:
    return ray_data(load_tiny_nerf(cfg, split), "tiny-nerf", 1.5)


@register_dataset("synthetic-scene", SyntheticSceneConfig, "offline: spheres and boxes rendered by an exact "
                  "ray caster (known geometry and depth)", group="scenes", details=_details, kind="rays")
def synthetic_scene(cfg: SyntheticSceneConfig, split: str) -> RayData:
    data = ray_data(load_synthetic_scene(cfg, split), "synthetic-scene", SCENE_BOUND)
    data.info.extras["target"] = [0.0, 0.0, 0.2]
    return data
