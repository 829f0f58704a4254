"""Datasets: one registry (``genlab data list``), real loading code, offline defaults."""
from . import geometry as _geometry  # noqa: F401  (registers torus)
from . import images as _images  # noqa: F401  (registers mnist, fashion-mnist, digits)
from . import toy as _toy  # noqa: F401  (registers the toy point sets)
from .registry import (DATASETS, DataInfo, TensorData, data_config, get_spec, list_datasets,
                       load_dataset, register_dataset)

BUILTIN_MODULES = (_images, _geometry, _toy)

__all__ = ["DATASETS", "DataInfo", "TensorData", "data_config", "get_spec", "list_datasets",
           "load_dataset", "register_dataset"]
