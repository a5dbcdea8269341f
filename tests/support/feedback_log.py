"""Served predictions and the truth fed back for them, written as the function writes them: LogEntry lines in the
sink layout (function.serving.logs.LocalSink) under a LocalStore's log prefix, where the retraining job reads them."""
from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from function.serving import logs
from function.serving.logs import LocalSink
from retrain_job.data.labelled import request_fields, to_records
from shared.bundle import Bundle
from shared.logline import FeedbackRows, PredictionRows
from shared.model import load_model
from shared.spec import ModelSpec
from shared.store import LocalStore
from shared.validation import build_batch


class FeedbackLog:
    """Prediction entries answered by a real bundle (a classifier's labels and probabilities, a regressor's values
    and intervals, as the function logs them), and feedback entries naming their prediction ids."""

    def __init__(self, store: LocalStore, spec: ModelSpec, bundle: Bundle, prefix: str = "logs") -> None:
        self.sink = LocalSink(store.root / prefix)
        self.spec, self.bundle = spec, bundle
        self.served = load_model(spec.name, bundle, "store", fast_max_rows=0)

    def predict(self, request_id: str, rows: pd.DataFrame, *, at: datetime,
                instances: dict[int, dict] | None = None) -> list[str]:
        """One answered request of these rows (request fields as a client sends them: a missing value left out);
        `instances` changes some rows' logged fields (values an older contract accepted). Its prediction ids."""
        contract = self.served.contract
        batch = build_batch(contract, to_records(rows, contract.field_names))
        logged = [{k: v for k, v in r.items() if v is not None} for r in to_records(rows, request_fields(self.spec))]
        for i, changes in (instances or {}).items():
            logged[i] = {**logged[i], **changes}
        payload = {"severity": "INFO", "message": f"POST /v1/models/{self.spec.name}:predict 200",
                   "event": "prediction", "status": 200, "request_id": request_id, "model": self.spec.name,
                   "model_version": self.bundle.version, "role": "stable", "fallback": False, "rows": len(rows),
                   "first_row": 0}
        inputs = {"instances": logged}
        if contract.is_classifier:
            proba = np.round(self.served.predictor.outputs(batch.matrix), 6)
            top = np.argmax(proba, axis=1)
            payload["labels"] = list(self.served.labels)
            logged_rows = PredictionRows(request_id, inputs, [self.served.labels[k] for k in top],
                                         probabilities=proba, probability=proba[np.arange(len(top)), top])
        else:
            est = self.served.predictor.predict(batch)  # as the function logs them
            logged_rows = PredictionRows(request_id, inputs, est.values, intervals=est.intervals(),
                                         extrapolation=est.flags())
        payload["data"] = logged_rows.encode(0, len(rows))
        self.sink.append(payload, "INFO", at)
        return [f"{request_id}-{j}" for j in range(len(rows))]

    def feedback(self, items: list[dict], *, at: datetime, source: str = "labelling-team") -> None:
        """One feedback entry: items {"id", "truth"} from one source."""
        self.sink.append({"severity": "INFO", "message": f"POST /v1/models/{self.spec.name}:feedback 200",
                          "event": "feedback", "model": self.spec.name, "source": source, "rows": len(items),
                          "first_row": 0, "data": FeedbackRows(items).encode(0, len(items))}, "INFO", at)

    @staticmethod
    def flush() -> None:
        """Everything appended so far, on disk."""
        logs.flush()
