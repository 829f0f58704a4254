"""Neural radiance fields (Mildenhall et al. 2020), the pipeline in the open.

- ``rays.py``: pixels to rays; ``sampling.py``: depths along rays; ``encoding.py``: positional encoding,
  spherical harmonics; ``render.py``: volume rendering (Eq. 3) and its hand-derived gradient.
- ``fields.py``: the vanilla MLP field and the fast grid field; ``model.py``: ``nerf`` and ``nerf-grid``.
- ``data.py``: ``blender``, ``tiny-nerf`` and the generated ``synthetic-scene``.
- ``metrics.py``: PSNR/SSIM on held-out views; ``figures.py``: renders, depth, the orbit GIF of ``genlab sample``.
- ``experiments.py``: the rendering gradient, an offline scene, Lego.
"""
MODELS = {"nerf": "model", "nerf-grid": "model"}
DATASETS = {name: "data" for name in ("blender", "tiny-nerf", "synthetic-scene")}
EXPERIMENTS = {name: "experiments" for name in ("nerf-render-gradient", "nerf-offline", "nerf-lego")}
METRICS = {"nerf_views": "metrics"}
FIGURES = ["figures"]
