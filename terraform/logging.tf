locals {
  # The function's own request log lines (one JSON line per request on stdout).
  function_log_filter = join(" AND ", [
    "resource.type=\"cloud_run_revision\"",
    "resource.labels.service_name=\"${local.service_name}\"",
    "logName=\"projects/${var.project_id}/logs/run.googleapis.com%2Fstdout\"",
  ])
}

# Prediction log lines into the bucket, where the retraining job's drift report reads them
# (run.googleapis.com/stdout/YYYY/MM/DD/HH:00:00_HH:59:59_S0.json, one LogEntry per line).
resource "google_logging_project_sink" "predictions" {
  # checkov:skip=CKV2_GCP_4:A Bucket Lock retention policy would make the serving pointer and retired bundles undeletable and un-overwritable; the bucket uses object versioning and lifecycle rules instead.
  name                   = "penguins-predictions-${var.environment}"
  destination            = "storage.googleapis.com/${google_storage_bucket.models.name}"
  filter                 = "${local.function_log_filter} AND jsonPayload.event=\"prediction\""
  unique_writer_identity = true
}

resource "google_logging_metric" "request_latency" {
  name            = "penguins_request_latency_${var.environment}"
  description     = "Function-measured request latency (ms), by status and model version."
  filter          = "${local.function_log_filter} AND jsonPayload.latency_ms>=0"
  value_extractor = "EXTRACT(jsonPayload.latency_ms)"
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "ms"
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

resource "google_logging_metric" "predictions" {
  name        = "penguins_predictions_${var.environment}"
  description = "Prediction requests by predicted species (\"batch\" for batches) and serving model version."
  filter      = "${local.function_log_filter} AND jsonPayload.event=\"prediction\""
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    labels {
      key        = "species"
      value_type = "STRING"
    }
    labels {
      key        = "model_version"
      value_type = "STRING"
    }
  }
  label_extractors = {
    species       = "EXTRACT(jsonPayload.species)"
    model_version = "EXTRACT(jsonPayload.model_version)"
  }
}

resource "google_logging_metric" "fallback_served" {
  name        = "penguins_fallback_served_${var.environment}"
  description = "Predictions answered by a fallback model (previous version or the shipped one)."
  filter      = "${local.function_log_filter} AND jsonPayload.event=\"prediction\" AND jsonPayload.fallback=true"
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
  }
}

resource "google_logging_metric" "validation_errors" {
  name        = "penguins_validation_errors_${var.environment}"
  description = "Requests rejected with 400 (invalid JSON or fields)."
  filter      = "${local.function_log_filter} AND jsonPayload.status=400"
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
  }
}
