# Least privilege: the function reads the bucket; the job writes models, reports and metrics and reads the logs;
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

# The BigQuery sink's writer identity may only write tables of the log dataset (it creates the log table there).
resource "google_bigquery_dataset_iam_member" "sink_writes_log_table" {
  dataset_id = google_bigquery_dataset.logs.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = google_logging_project_sink.predictions_bigquery.writer_identity
}

# The job reads the log table (the retraining run's drift report, the hourly monitor), and nothing else in BigQuery;
# running a query is a job in the project, which the dataset role does not allow.
resource "google_bigquery_dataset_iam_member" "job_reads_logs" {
  dataset_id = google_bigquery_dataset.logs.dataset_id
  role       = "roles/bigquery.dataViewer"
  member     = "serviceAccount:${google_service_account.job.email}"
}

resource "google_project_iam_member" "job_runs_queries" {
  project = var.project_id
  role    = "roles/bigquery.jobUser"
  member  = "serviceAccount:${google_service_account.job.email}"
}

# The log hash key (LOG_HASH_KEY): the functions hash with it, the job hashes an erased id with it. Granted on the
# project with a condition naming the one secret (the schema this repository validates against has no per-secret
# IAM resource).
resource "google_project_iam_member" "reads_log_hash_key" {
  for_each = var.log_hash_key_secret == "" ? {} : { function = google_service_account.function.email, job = google_service_account.job.email }
  project  = var.project_id
  role     = "roles/secretmanager.secretAccessor"
  member   = "serviceAccount:${each.value}"
  condition {
    title      = "log-hash-key-only"
    expression = "resource.name.startsWith(\"projects/${data.google_project.this.number}/secrets/${var.log_hash_key_secret}\")"
  }
}
