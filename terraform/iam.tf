# Least privilege: the function reads the bucket; the job writes models, reports and metrics;
# the scheduler may only run the job. No primitive roles anywhere.

resource "google_service_account" "function" {
  account_id   = "penguins-fn-${var.environment}"
  display_name = "Penguin classifier function (${var.environment})"
}

resource "google_service_account" "job" {
  account_id   = "penguins-job-${var.environment}"
  display_name = "Penguin retraining job (${var.environment})"
}

resource "google_service_account" "scheduler" {
  account_id   = "penguins-sched-${var.environment}"
  display_name = "Starts the penguin retraining job (${var.environment})"
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

resource "google_cloud_run_v2_job_iam_member" "scheduler_runs_job" {
  name     = google_cloud_run_v2_job.retrain.name
  location = var.region
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.scheduler.email}"
}

# Who may call the function: private by default; public only when allow_public_invoker says so.
resource "google_cloud_run_v2_service_iam_member" "invokers" {
  for_each = toset(concat(var.invoker_members, var.allow_public_invoker ? ["allUsers"] : []))
  name     = google_cloud_run_v2_service.function.name
  location = var.region
  role     = "roles/run.invoker"
  member   = each.value
}

# The log sink's writer identity may only create objects in the bucket.
resource "google_storage_bucket_iam_member" "sink_writes_logs" {
  bucket = google_storage_bucket.models.name
  role   = "roles/storage.objectCreator"
  member = google_logging_project_sink.predictions.writer_identity
}
