"""Data loading, validation splits, silo partitioning and tokenization for text classification."""

from aslora_core.data.encoding import EncodedDataset, Tokenizer, encode
from aslora_core.data.errors import DataError
from aslora_core.data.examples import LabelledTexts, TextExample
from aslora_core.data.loaders import load_bbc_news, load_table, split_validation
from aslora_core.data.partition import label_skew, partition_dirichlet, partition_iid

__all__ = [
    "DataError",
    "EncodedDataset",
    "LabelledTexts",
    "TextExample",
    "Tokenizer",
    "encode",
    "label_skew",
    "load_bbc_news",
    "load_table",
    "partition_dirichlet",
    "partition_iid",
    "split_validation",
]
