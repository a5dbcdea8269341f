# The model bucket, shared by every model: bundles and serving pointers (models/MODEL/), drift reports
# (reports/), labelled data (data/), task scores (runs/) and the prediction logs the sink writes
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

  lifecycle_rule {
    condition {
      age            = var.report_retention_days
      matches_prefix = ["reports/drift/2"]
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
