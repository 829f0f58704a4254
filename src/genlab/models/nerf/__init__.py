"""Neural radiance fields (Mildenhall et al. 2020): the pipeline of 001 Figure 6 in the open.

rays.py (pixels -> rays), sampling.py (depths along rays), encoding.py (positional encoding, spherical
harmonics), render.py (Eq. 3 and its hand-derived gradient), fields.py (the vanilla MLP field and the
fast grid field), model.py (the ``nerf`` and ``nerf-grid`` models).
"""
