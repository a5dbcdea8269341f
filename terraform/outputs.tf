output "function_urls" {
  description = "URL of each model's service (stable traffic), by model."
  value       = { for m, svc in module.model : m => svc.function_url }
}

output "candidate_urls" {
  description = "Tag URL of each model's candidate revision, for the models that have one."
  value       = { for m, svc in module.model : m => svc.candidate_url if svc.candidate_url != null }
}

output "service_names" {
  description = "Name of each model's Cloud Run service, by model."
  value       = { for m, svc in module.model : m => svc.service_name }
}

output "job_names" {
  description = "Name of each model's retraining Cloud Run Job, by model."
  value       = { for m, svc in module.model : m => svc.job_name }
}

output "model_bucket" {
  description = "Bucket holding every model's bundles, pointers, drift reports and the prediction logs."
  value       = google_storage_bucket.models.name
}

output "model_store" {
  description = "MODEL_STORE value for the functions and the jobs."
  value       = "gs://${google_storage_bucket.models.name}"
}

output "log_table" {
  description = "BigQuery table of the routed prediction and feedback log lines (LOG_TABLE of the jobs): PROJECT.DATASET.TABLE."
  value       = local.log_table
}

output "service_accounts" {
  description = "Service accounts of the functions, the jobs and the scheduler (shared by the models)."
  value = {
    function  = google_service_account.function.email
    job       = google_service_account.job.email
    scheduler = google_service_account.scheduler.email
  }
}
