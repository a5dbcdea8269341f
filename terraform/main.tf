locals {
  labels = {
    app         = var.name_prefix
    environment = var.environment
  }
  # One Cloud Run service and one retraining job per model: named here, created by module.model.
  service_names = { for m in keys(var.models) : m => "fn-${m}-${var.environment}" }
  job_names     = { for m in keys(var.models) : m => "retrain-${m}-${var.environment}" }
  # Where the function's prediction log lines land (a Cloud Logging sink writes at the bucket root).
  sink_log_prefix = "run.googleapis.com/"
  # A model missing from var.traffic sends all its traffic to its latest revision.
  no_candidate = { stable_revision = "", candidate_revision = "", candidate_percent = 0 }
}

data "google_project" "this" {}
