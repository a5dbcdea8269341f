"""The one validator, derived from a model's contract: rules and messages (`rules`), the fast row and column
paths that turn valid requests into the model's matrix (`fast`), and the Marshmallow schema that judges and
explains anything else (`schema`)."""
from shared.validation.fast import (
    SMALL_BATCH,
    FeatureBatch,
    InvalidRows,
    build_batch,
    build_batch_from_columns,
    check_matrix,
)

__all__ = ["SMALL_BATCH", "FeatureBatch", "InvalidRows", "build_batch", "build_batch_from_columns", "check_matrix"]
