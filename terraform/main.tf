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
  # The BigQuery dataset of the routed log lines (letters, digits and underscores only), and the table the sink
  # creates in it, named after the log (shared/logline.py's BIGQUERY_TABLE): the jobs' LOG_TABLE.
  log_dataset_id = "${replace(var.name_prefix, "-", "_")}_logs_${var.environment}"
  log_table      = "${var.project_id}.${local.log_dataset_id}.run_googleapis_com_stdout"
  # A model missing from var.traffic sends all its traffic to its latest revision.
  no_candidate = { stable_revision = "", candidate_revision = "", candidate_percent = 0 }
}

data "google_project" "this" {}
