# The model bucket, shared by every model: bundles and serving pointers (models/MODEL/), drift and monitor reports
# (reports/MODEL/), labelled data (data/), task scores (runs/) and the prediction and feedback logs the sink writes
# (run.googleapis.com/).
resource "google_storage_bucket" "models" {
  name                        = var.model_bucket_name
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  labels                      = local.labels

  versioning {
    enabled = true
  }

  logging {
    log_bucket = var.access_log_bucket_name
  }

  # Old pointers and retired bundles survive as noncurrent versions for a while, then go.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_retention_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  # Each model's stamped reports, reports/MODEL/drift/STAMP/ (every retraining run) and reports/MODEL/monitor/STAMP.*
  # (every hour); the latest/ and latest.* that each run rewrites stay.
  lifecycle_rule {
    condition {
      age            = var.report_retention_days
      matches_prefix = flatten([for m in keys(var.models) : ["reports/${m}/drift/2", "reports/${m}/monitor/2"]])
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      age            = var.log_retention_days
      matches_prefix = [local.sink_log_prefix]
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      age            = 7
      matches_prefix = ["runs/", "build/"]
    }
    action {
      type = "Delete"
    }
  }
}

# The routed log lines in BigQuery (google_logging_project_sink.predictions_bigquery): the sink creates one table,
# run_googleapis_com_stdout (named after the log), partitioned by day on the entries' `timestamp`; each partition
# expires log_retention_days after its day, like the sink's files in the bucket. The dataset's default partition
# expiration is what the sink's table gets when the sink creates it (see terraform/README.md, "Logs in BigQuery").
resource "google_bigquery_dataset" "logs" {
  # checkov:skip=CKV_GCP_81:Google-managed encryption, like the model bucket that archives the same lines; a customer-managed key would need a KMS key ring and grants this platform does not provision.
  dataset_id                      = local.log_dataset_id
  friendly_name                   = "Prediction and feedback logs (${var.environment})"
  description                     = "Prediction and feedback log lines of every model, routed by the ${var.name_prefix}-predictions-bq-${var.environment} sink."
  location                        = var.region
  default_partition_expiration_ms = var.log_retention_days * 24 * 60 * 60 * 1000
  delete_contents_on_destroy      = false
  labels                          = local.labels
}
