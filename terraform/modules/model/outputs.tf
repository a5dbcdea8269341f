output "service_name" {
  description = "Name of the model's Cloud Run service."
  value       = google_cloud_run_v2_service.function.name
}

output "function_url" {
  description = "URL of the model's service (stable traffic)."
  value       = google_cloud_run_v2_service.function.uri
}

output "candidate_url" {
  description = "Tag URL of the model's candidate revision, when there is one."
  value       = var.candidate_revision == "" ? null : [for t in google_cloud_run_v2_service.function.traffic_statuses : t.uri if t.tag == var.candidate_tag][0]
}

output "job_name" {
  description = "Name of the model's retraining Cloud Run Job."
  value       = google_cloud_run_v2_job.retrain.name
}

output "score_command" {
  description = "The gcloud command that scores files with this model on the job (fill in INPUT and OUTPUT, gs:// URIs the job's service account can read and write)."
  value       = "gcloud run jobs execute ${google_cloud_run_v2_job.retrain.name} --region ${var.region} --tasks ${var.score_task_count} --task-timeout ${var.score_task_timeout} --args=score,--model,${var.model},--input,INPUT,--output,OUTPUT --wait"
}

output "scheduler_job_name" {
  description = "Name of the Cloud Scheduler job that starts the retraining job."
  value       = google_cloud_scheduler_job.retrain.name
}

output "monitor_scheduler_job_name" {
  description = "Name of the Cloud Scheduler job that starts the job hourly in monitor mode."
  value       = google_cloud_scheduler_job.monitor.name
}

output "alert_policies" {
  description = "Resource names of the model's alert policies, by alert."
  value = {
    error_rate        = google_monitoring_alert_policy.error_rate.name
    latency           = google_monitoring_alert_policy.latency.name
    fallback          = google_monitoring_alert_policy.fallback.name
    drift             = google_monitoring_alert_policy.drift.name
    retrain_failed    = google_monitoring_alert_policy.retrain_failed.name
    no_recent_retrain = google_monitoring_alert_policy.no_recent_retrain.name
    live_quality      = one(concat(google_monitoring_alert_policy.live_accuracy[*].name, google_monitoring_alert_policy.live_coverage[*].name))
  }
}

output "dashboard_id" {
  description = "Id of the model's Cloud Monitoring dashboard."
  value       = google_monitoring_dashboard.model.id
}
