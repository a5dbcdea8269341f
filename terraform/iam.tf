# Least privilege: the function reads the bucket; the job writes models, reports and metrics;
# the scheduler may only run the jobs (granted per job in modules/model). No primitive roles anywhere.
# One account of each kind serves every model.

resource "google_service_account" "function" {
  account_id   = "${var.name_prefix}-fn-${var.environment}"
  display_name = "Model-serving functions (${var.environment})"
}

resource "google_service_account" "job" {
  account_id   = "${var.name_prefix}-job-${var.environment}"
  display_name = "Model retraining jobs (${var.environment})"
}

resource "google_service_account" "scheduler" {
  account_id   = "${var.name_prefix}-sched-${var.environment}"
  display_name = "Starts the model retraining jobs (${var.environment})"
}

resource "google_storage_bucket_iam_member" "function_reads_models" {
  bucket = google_storage_bucket.models.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.function.email}"
}

resource "google_storage_bucket_iam_member" "job_writes_models" {
  bucket = google_storage_bucket.models.name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${google_service_account.job.email}"
}

resource "google_project_iam_member" "job_writes_metrics" {
  project = var.project_id
  role    = "roles/monitoring.metricWriter"
  member  = "serviceAccount:${google_service_account.job.email}"
}

resource "google_project_iam_member" "job_writes_logs" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${google_service_account.job.email}"
}

resource "google_project_iam_member" "function_writes_logs" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${google_service_account.function.email}"
}

# The log sink's writer identity may only create objects in the bucket.
resource "google_storage_bucket_iam_member" "sink_writes_logs" {
  bucket = google_storage_bucket.models.name
  role   = "roles/storage.objectCreator"
  member = google_logging_project_sink.predictions.writer_identity
}
