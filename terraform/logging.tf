locals {
  # Every model's request log lines (one JSON line per request on stdout, with a `model` field).
  function_log_filter = join(" AND ", [
    "resource.type=\"cloud_run_revision\"",
    "resource.labels.service_name=(${join(" OR ", [for name in values(local.service_names) : "\"${name}\""])})",
    "logName=\"projects/${var.project_id}/logs/run.googleapis.com%2Fstdout\"",
  ])
  # Every model's job on stdout: batch scoring's `--log` lines when the job reads BigQuery (retrain_job/score/predlog.py).
  job_log_filter = join(" AND ", [
    "resource.type=\"cloud_run_job\"",
    "resource.labels.job_name=(${join(" OR ", [for name in values(local.job_names) : "\"${name}\""])})",
    "logName=\"projects/${var.project_id}/logs/run.googleapis.com%2Fstdout\"",
  ])
  # What both sinks route: the three events of shared/logline.py's SINK_EVENTS, from the functions and the jobs.
  routed_log_filter = "((${local.function_log_filter}) OR (${local.job_log_filter})) AND jsonPayload.event=(\"prediction\" OR \"prediction_rows\" OR \"feedback\")"
}

# Prediction and feedback log lines of every model, routed twice with the same filter. Three events,
# shared/logline.py's SINK_EVENTS: `prediction` (a request's first entry), `prediction_rows` (a large batch's later
# entries: more rows, no latency, no status) and `feedback` (POST /feedback's items, a large one's later entries too).
#
# Into BigQuery, what each model's job queries (LOG_ENGINE=bigquery, LOG_TABLE): the retraining run for the drift
# report, the hourly monitor to join every served row with the truth fed back for it, each by the lines' `model`.
# The sink creates run_googleapis_com_stdout in the dataset, partitioned by day on `timestamp`, its columns taken
# from the entries it receives: every routed field has one type for every model (shared/logline.py's ROUTED_FIELDS)
# and each model's own rows travel as JSON text in `data`, so no model's line is refused for a schema conflict.
resource "google_logging_project_sink" "predictions_bigquery" {
  name                   = "${var.name_prefix}-predictions-bq-${var.environment}"
  description            = "Prediction and feedback log lines of every model into BigQuery (daily partitions)."
  destination            = "bigquery.googleapis.com/projects/${var.project_id}/datasets/${google_bigquery_dataset.logs.dataset_id}"
  filter                 = local.routed_log_filter
  unique_writer_identity = true

  bigquery_options {
    use_partitioned_tables = true
  }
}

# Into the bucket, as an archive (and what the job reads with LOG_ENGINE unset): one LogEntry per line in
# run.googleapis.com/stdout/YYYY/MM/DD/HH:00:00_HH:59:59_S0.json, deleted after log_retention_days.
resource "google_logging_project_sink" "predictions" {
  # checkov:skip=CKV2_GCP_4:A Bucket Lock retention policy would make the serving pointer and retired bundles undeletable and un-overwritable; the bucket uses object versioning and lifecycle rules instead.
  name                   = "${var.name_prefix}-predictions-${var.environment}"
  description            = "Prediction and feedback log lines of every model into the model bucket (archive)."
  destination            = "storage.googleapis.com/${google_storage_bucket.models.name}"
  filter                 = local.routed_log_filter
  unique_writer_identity = true
}

# Log-based metrics, shared by the models: each series carries the Cloud Run service (resource label
# service_name) and the `model` label, and each model's alerts and dashboard filter on its service. Each request is
# counted once: the metrics that count predictions match event="prediction", a request's first entry only, and the
# latency metric needs latency_ms, which a batch's later entries (prediction_rows, feedback) do not carry.
resource "google_logging_metric" "request_latency" {
  name            = "${var.name_prefix}_request_latency_${var.environment}"
  description     = "Function-measured request latency (ms), by model, status and model version."
  filter          = "${local.function_log_filter} AND jsonPayload.latency_ms>=0"
  value_extractor = "EXTRACT(jsonPayload.latency_ms)"
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "ms"
    labels {
      key        = "model"
      value_type = "STRING"
    }
    labels {
      key        = "status"
      value_type = "STRING"
    }
    labels {
      key        = "model_version"
      value_type = "STRING"
    }
  }
  label_extractors = {
    model         = "EXTRACT(jsonPayload.model)"
    status        = "EXTRACT(jsonPayload.status)"
    model_version = "EXTRACT(jsonPayload.model_version)"
  }
  bucket_options {
    exponential_buckets {
      num_finite_buckets = 40
      growth_factor      = 1.3
      scale              = 0.1
    }
  }
}

# `prediction` keeps a classifier's predicted label ("batch" for batches) and drops a regressor's value:
# only values that do not start like a number become a label, so a regressor cannot create a series per
# distinct prediction (its lines count with an empty `prediction`).
resource "google_logging_metric" "predictions" {
  name        = "${var.name_prefix}_predictions_${var.environment}"
  description = "Prediction requests by model, predicted class (\"batch\" for batches, empty for regressors) and serving model version."
  filter      = "${local.function_log_filter} AND jsonPayload.event=\"prediction\""
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    labels {
      key        = "model"
      value_type = "STRING"
    }
    labels {
      key        = "prediction"
      value_type = "STRING"
    }
    labels {
      key        = "model_version"
      value_type = "STRING"
    }
  }
  label_extractors = {
    model         = "EXTRACT(jsonPayload.model)"
    prediction    = "REGEXP_EXTRACT(jsonPayload.prediction, \"^([^-+.0-9].*)$\")"
    model_version = "EXTRACT(jsonPayload.model_version)"
  }
}

resource "google_logging_metric" "fallback_served" {
  name        = "${var.name_prefix}_fallback_served_${var.environment}"
  description = "Predictions answered by a fallback model (previous version or the shipped one), by model."
  filter      = "${local.function_log_filter} AND jsonPayload.event=\"prediction\" AND jsonPayload.fallback=true"
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    labels {
      key        = "model"
      value_type = "STRING"
    }
  }
  label_extractors = {
    model = "EXTRACT(jsonPayload.model)"
  }
}

resource "google_logging_metric" "validation_errors" {
  name        = "${var.name_prefix}_validation_errors_${var.environment}"
  description = "Requests rejected with 400 (invalid JSON or fields), by model (empty when the request named none)."
  filter      = "${local.function_log_filter} AND jsonPayload.status=400"
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    labels {
      key        = "model"
      value_type = "STRING"
    }
  }
  label_extractors = {
    model = "EXTRACT(jsonPayload.model)"
  }
}
