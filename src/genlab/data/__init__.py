"""Datasets: listed in ``genlab.catalog.DATASETS`` (``genlab data list``), real loading code, offline
defaults. Batch sources for in-memory examples, token streams and sequence pairs in ``batches``."""
from genlab.data.registry import (
                       DataInfo,
                       PairData,
                       TensorData,
                       TokenStream,
                       data_config,
                       get_spec,
                       list_datasets,
                       load_dataset,
                       register_dataset,
)

__all__ = ["DataInfo", "PairData", "TensorData", "TokenStream", "data_config", "get_spec", "list_datasets",
           "load_dataset", "register_dataset"]
