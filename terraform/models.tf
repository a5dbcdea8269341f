# Each model's service, job, schedules, alerts and dashboard (modules/model), one instance per entry of
# var.models; the bucket, the log dataset, the log sinks, the log-based metrics and the service accounts are shared.
module "model" {
  source   = "./modules/model"
  for_each = var.models

  model        = each.key
  environment  = var.environment
  project_id   = var.project_id
  region       = var.region
  labels       = local.labels
  service_name = local.service_names[each.key]
  job_name     = local.job_names[each.key]

  model_store         = "gs://${google_storage_bucket.models.name}"
  log_table           = local.log_table
  log_hash_key_secret = var.log_hash_key_secret
  source_location     = "gs://${google_storage_bucket.models.name}/${var.function_source_object}"
  function_base_image = var.function_base_image
  revision_suffix     = var.revision_suffix

  function_service_account  = google_service_account.function.email
  job_service_account       = google_service_account.job.email
  scheduler_service_account = google_service_account.scheduler.email

  function_memory        = coalesce(each.value.memory, var.function_memory)
  function_cpu           = var.function_cpu
  function_concurrency   = var.function_concurrency
  function_workers       = var.function_workers
  function_threads       = var.function_threads
  function_min_instances = coalesce(each.value.min_instances, var.function_min_instances)
  function_max_instances = coalesce(each.value.max_instances, var.function_max_instances)
  function_timeout_s     = var.function_timeout_s
  pointer_ttl_s          = var.pointer_ttl_s
  allow_public_invoker   = var.allow_public_invoker
  invoker_members        = var.invoker_members

  stable_revision    = lookup(var.traffic, each.key, local.no_candidate).stable_revision
  candidate_revision = lookup(var.traffic, each.key, local.no_candidate).candidate_revision
  candidate_percent  = lookup(var.traffic, each.key, local.no_candidate).candidate_percent
  candidate_tag      = var.candidate_tag

  job_image          = var.job_image
  job_task_count     = coalesce(each.value.job_task_count, var.job_task_count)
  job_canary_percent = coalesce(each.value.job_canary_percent, var.job_canary_percent)
  retrain_schedule   = coalesce(each.value.retrain_schedule, var.retrain_schedule)
  monitor_schedule   = coalesce(each.value.monitor_schedule, var.monitor_schedule)
  retrain_time_zone  = var.retrain_time_zone

  log_metric_names = {
    request_latency   = google_logging_metric.request_latency.name
    predictions       = google_logging_metric.predictions.name
    fallback_served   = google_logging_metric.fallback_served.name
    validation_errors = google_logging_metric.validation_errors.name
  }
  notification_channels = var.notification_channels
  alert_5xx_ratio       = coalesce(each.value.alert_5xx_ratio, var.alert_5xx_ratio)
  alert_p95_latency_ms  = coalesce(each.value.alert_p95_latency_ms, var.alert_p95_latency_ms)
  alert_drift_share     = coalesce(each.value.alert_drift_share, var.alert_drift_share)
  no_retrain_days       = coalesce(each.value.no_retrain_days, var.no_retrain_days)
  # per model only (no project-wide value): the floor of the live metric its spec's kind writes
  live_accuracy_floor = each.value.live_accuracy_floor
  live_coverage_floor = each.value.live_coverage_floor
}
