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
