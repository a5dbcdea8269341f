output "function_url" {
  description = "URL of the function (stable traffic)."
  value       = google_cloud_run_v2_service.function.uri
}

output "candidate_url" {
  description = "Tag URL of the candidate revision, when there is one."
  value       = var.candidate_revision == "" ? null : [for t in google_cloud_run_v2_service.function.traffic_statuses : t.uri if t.tag == var.candidate_tag][0]
}

output "model_bucket" {
  description = "Bucket holding bundles, the pointer, drift reports and prediction logs."
  value       = google_storage_bucket.models.name
}

output "model_store" {
  description = "MODEL_STORE value for the function and the job."
  value       = "gs://${google_storage_bucket.models.name}"
}

output "job_name" {
  description = "Name of the retraining Cloud Run Job."
  value       = google_cloud_run_v2_job.retrain.name
}

output "service_accounts" {
  description = "Service accounts of the function, the job and the scheduler."
  value = {
    function  = google_service_account.function.email
    job       = google_service_account.job.email
    scheduler = google_service_account.scheduler.email
  }
}
