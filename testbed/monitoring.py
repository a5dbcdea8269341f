"""A local gRPC server of the real google.monitoring.v3.MetricService protocol (CreateTimeSeries only).

It enforces the API's documented limits so a test can fail the way production would: at most 200
series per request, exactly one point per series, no series twice in a request, custom metric types,
and a generic_task resource with all its labels.
"""
from __future__ import annotations

from concurrent import futures

import grpc
from google.cloud import monitoring_v3
from google.protobuf import empty_pb2

GENERIC_TASK_LABELS = {"project_id", "location", "namespace", "job", "task_id"}


class FakeMetricService:
    """Records every accepted CreateTimeSeriesRequest; rejects invalid ones with INVALID_ARGUMENT."""

    def __init__(self) -> None:
        self.requests: list[monitoring_v3.CreateTimeSeriesRequest] = []
        self.rejected: list[str] = []
        self.stored: list[monitoring_v3.TimeSeries] = []  # what ListTimeSeries answers (filtered by revision)
        self.list_requests: list[monitoring_v3.ListTimeSeriesRequest] = []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handler = grpc.method_handlers_generic_handler("google.monitoring.v3.MetricService", {
            "CreateTimeSeries": grpc.unary_unary_rpc_method_handler(
                self._create, request_deserializer=monitoring_v3.CreateTimeSeriesRequest.deserialize,
                response_serializer=empty_pb2.Empty.SerializeToString),
            "ListTimeSeries": grpc.unary_unary_rpc_method_handler(
                self._list, request_deserializer=monitoring_v3.ListTimeSeriesRequest.deserialize,
                response_serializer=monitoring_v3.ListTimeSeriesResponse.serialize)})
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.endpoint = f"127.0.0.1:{self.port}"

    def start(self) -> FakeMetricService:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop(grace=None)

    def _problem(self, request: monitoring_v3.CreateTimeSeriesRequest) -> str | None:
        if not request.name.startswith("projects/"):
            return "name must be projects/<id>"
        if not 0 < len(request.time_series) <= 200:
            return f"{len(request.time_series)} series; 1 to 200 allowed"
        seen = set()
        for ts in request.time_series:
            key = (ts.metric.type, tuple(sorted(ts.metric.labels.items())), tuple(sorted(ts.resource.labels.items())))
            if key in seen:
                return f"series {ts.metric.type} appears twice"
            seen.add(key)
            if len(ts.points) != 1:
                return f"{ts.metric.type} has {len(ts.points)} points; exactly one allowed"
            if not ts.metric.type.startswith("custom.googleapis.com/"):
                return f"{ts.metric.type} is not a custom metric"
            if ts.resource.type != "generic_task" or set(ts.resource.labels) != GENERIC_TASK_LABELS:
                return f"bad resource {ts.resource.type} {dict(ts.resource.labels)}"
        return None

    def _create(self, request, context):
        problem = self._problem(request)
        if problem:
            self.rejected.append(problem)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        self.requests.append(request)
        return empty_pb2.Empty()

    def _list(self, request, context):
        self.list_requests.append(request)
        matching = [ts for ts in self.stored
                    if f'revision_name="{ts.resource.labels.get("revision_name")}"' in request.filter
                    and f'metric.type="{ts.metric.type}"' in request.filter]
        return monitoring_v3.ListTimeSeriesResponse(time_series=matching)

    def add_request_counts(self, revision: str, counts: dict[str, int]) -> None:
        """Store run.googleapis.com/request_count series of a revision, one per response code class."""
        for code_class, count in counts.items():
            ts = monitoring_v3.TimeSeries()
            ts.metric.type = "run.googleapis.com/request_count"
            ts.metric.labels["response_code_class"] = code_class
            ts.resource.type = "cloud_run_revision"
            ts.resource.labels["revision_name"] = revision
            ts.points = [monitoring_v3.Point({"interval": {"end_time": {"seconds": 1}},
                                              "value": {"int64_value": count}})]
            self.stored.append(ts)

    def series(self) -> list:
        return [ts for r in self.requests for ts in r.time_series]
