locals {
  service_name = "penguins-fn-${var.environment}"
  job_name     = "penguins-retrain-${var.environment}"
  labels = {
    app         = "penguins"
    environment = var.environment
  }
  # Where the function's prediction log lines land (a Cloud Logging sink writes at the bucket root).
  sink_log_prefix = "run.googleapis.com/"
}

data "google_project" "this" {}
