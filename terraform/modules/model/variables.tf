# One model's serving and retraining: what the root module passes for each entry of its `models` map.
# Shared things (the bucket, the service accounts, the log-based metrics) come in by name.

variable "model" {
  description = "The model's name: its folder under specs/ and under models/ in the bucket."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,30}[a-z0-9]$", var.model))
    error_message = "model must be 2-32 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "environment" {
  description = "Environment name, used in display names and labels."
  type        = string
}

variable "project_id" {
  description = "Google Cloud project that hosts the model's service and job."
  type        = string
}

variable "region" {
  description = "Region of the service, the job and the scheduler."
  type        = string
}

variable "labels" {
  description = "Labels of the shared resources; the module adds `model`."
  type        = map(string)
  default     = {}
}

variable "service_name" {
  description = "Name of the model's Cloud Run service (at most 42 characters: its revisions add a suffix)."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,40}[a-z0-9]$", var.service_name))
    error_message = "service_name must be at most 42 lowercase letters, digits or dashes."
  }
}

variable "job_name" {
  description = "Name of the model's retraining Cloud Run Job (its scheduler job adds -schedule)."
  type        = string
}

variable "model_store" {
  description = "MODEL_STORE of the service and the job (gs://BUCKET)."
  type        = string
}

variable "log_table" {
  description = "LOG_TABLE of the job: PROJECT.DATASET.TABLE of the routed log lines in BigQuery (the shared log sink's table)."
  type        = string
}

variable "source_location" {
  description = "gs:// URI of the function's source zip, the same bundle for every model."
  type        = string
}

variable "function_base_image" {
  description = "Cloud Run functions base image the source is built on."
  type        = string
}

variable "revision_suffix" {
  description = "Suffix of the revision this apply creates (Cloud Build passes the short commit SHA)."
  type        = string
}

variable "function_service_account" {
  description = "Email of the (shared) service account the service runs as."
  type        = string
}

variable "job_service_account" {
  description = "Email of the (shared) service account the job runs as."
  type        = string
}

variable "scheduler_service_account" {
  description = "Email of the (shared) service account Cloud Scheduler starts the job as; granted run.jobsExecutorWithOverrides on this job only."
  type        = string
}

variable "function_memory" {
  description = "Memory per instance."
  type        = string
}

variable "function_cpu" {
  description = "vCPUs per instance."
  type        = string
}

variable "function_concurrency" {
  description = "Requests routed to one instance at once."
  type        = number
}

variable "function_workers" {
  description = "Functions Framework gunicorn worker processes per instance (WORKERS)."
  type        = number
}

variable "function_threads" {
  description = "Threads per gunicorn worker (THREADS)."
  type        = number
}

variable "function_min_instances" {
  description = "Instances of this model's service kept warm (0 scales to zero)."
  type        = number
  validation {
    condition     = var.function_min_instances >= 0
    error_message = "function_min_instances must not be negative."
  }
}

variable "function_max_instances" {
  description = "Upper bound on instances of this model's service (a cost guard)."
  type        = number
  validation {
    condition     = var.function_max_instances >= 1 && var.function_max_instances <= 1000
    error_message = "function_max_instances must be 1 to 1000."
  }
  validation {
    condition     = var.function_max_instances >= var.function_min_instances
    error_message = "function_max_instances must be at least function_min_instances."
  }
}

variable "function_timeout_s" {
  description = "Request timeout in seconds."
  type        = number
}

variable "pointer_ttl_s" {
  description = "How often (at most) the function re-reads the model's serving.json (POINTER_TTL_S)."
  type        = number
}

variable "allow_public_invoker" {
  description = "Let anyone on the internet call this model's service (allUsers invoker). Private by default."
  type        = bool
  default     = false
}

variable "invoker_members" {
  description = "IAM members allowed to call this model's service."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for m in var.invoker_members : !contains(["allUsers", "allAuthenticatedUsers"], m)])
    error_message = "Use allow_public_invoker, not invoker_members, to make the function public."
  }
}

variable "stable_revision" {
  description = "Revision serving the stable share of traffic; empty means the latest revision."
  type        = string
  default     = ""
}

variable "candidate_revision" {
  description = "Revision under test (canary or blue-green); empty means none."
  type        = string
  default     = ""
}

variable "candidate_percent" {
  description = "Share of traffic for the candidate revision: 0 (tag only), a canary share, or 100 (blue-green flip)."
  type        = number
  default     = 0
  validation {
    condition     = var.candidate_percent >= 0 && var.candidate_percent <= 100
    error_message = "candidate_percent must be 0 to 100."
  }
  validation {
    condition     = var.candidate_percent == 0 || var.candidate_revision != ""
    error_message = "candidate_percent needs a candidate_revision."
  }
}

variable "candidate_tag" {
  description = "Tag giving the candidate revision its own URL (https://TAG---SERVICE-HASH.run.app)."
  type        = string
  default     = "candidate"
}

variable "job_image" {
  description = "Container image of the retraining job (the same image for every model)."
  type        = string
}

variable "job_task_count" {
  description = "Parallel tasks of each retraining run of this model."
  type        = number
  validation {
    condition     = var.job_task_count >= 1 && var.job_task_count <= 18
    error_message = "job_task_count must be 1 to 18."
  }
}

variable "job_canary_percent" {
  description = "Publish retrained models as a model canary with this share (0: straight to stable)."
  type        = number
  validation {
    condition     = var.job_canary_percent >= 0 && var.job_canary_percent < 100
    error_message = "job_canary_percent must be at least 0 and below 100."
  }
}

variable "retrain_schedule" {
  description = "Cron schedule of this model's retraining job."
  type        = string
}

variable "retrain_time_zone" {
  description = "Time zone of the cron schedules (retrain and monitor)."
  type        = string
}

variable "monitor_schedule" {
  description = "Cron schedule of this model's monitor run (the job with args monitor --model MODEL): live quality from fed-back truth."
  type        = string
  default     = "17 * * * *"
  validation {
    condition     = length(split(" ", trimspace(var.monitor_schedule))) == 5
    error_message = "monitor_schedule must be a five-field cron expression."
  }
}

variable "log_metric_names" {
  description = "Names of the shared log-based metrics (request_latency, predictions, fallback_served, validation_errors); charts and alerts filter them to this model's service."
  type = object({
    request_latency   = string
    predictions       = string
    fallback_served   = string
    validation_errors = string
  })
}

variable "notification_channels" {
  description = "Monitoring notification channel ids (projects/P/notificationChannels/N) that this model's alerts go to."
  type        = list(string)
  default     = []
}

variable "alert_5xx_ratio" {
  description = "Alert when the share of 5xx responses over 5 minutes exceeds this."
  type        = number
}

variable "alert_p95_latency_ms" {
  description = "Alert when p95 request latency over 5 minutes exceeds this many milliseconds."
  type        = number
}

variable "alert_drift_share" {
  description = "Alert when the retraining job reports a share of drifted features above this."
  type        = number
  validation {
    condition     = var.alert_drift_share > 0 && var.alert_drift_share <= 1
    error_message = "alert_drift_share must be in (0, 1]."
  }
}

variable "no_retrain_days" {
  description = "Alert when no retraining run of this model has succeeded for this many days."
  type        = number
}

# Exactly one is set: the floor of the live metric this model's monitor writes, from its spec's [gate].
variable "live_accuracy_floor" {
  description = "Classifiers: alert when a served version's realised live_accuracy falls below this (the spec's [gate] accuracy_floor); null for a regressor."
  type        = number
  default     = null
  validation {
    condition     = var.live_accuracy_floor == null ? true : var.live_accuracy_floor > 0 && var.live_accuracy_floor <= 1
    error_message = "live_accuracy_floor must be in (0, 1]."
  }
  validation {
    condition     = (var.live_accuracy_floor == null) != (var.live_coverage_floor == null)
    error_message = "Set exactly one of live_accuracy_floor (classifiers) and live_coverage_floor (regressors)."
  }
}

variable "live_coverage_floor" {
  description = "Regressors: alert when a served version's realised live_coverage (share of truths inside the prediction interval) falls below this (the spec's [gate] coverage_min); null for a classifier."
  type        = number
  default     = null
  validation {
    condition     = var.live_coverage_floor == null ? true : var.live_coverage_floor > 0 && var.live_coverage_floor <= 1
    error_message = "live_coverage_floor must be in (0, 1]."
  }
}

variable "score_task_count" {
  description = "Tasks of a batch scoring execution of the job, in the module's score_command output (an execution may ask for others with --tasks)."
  type        = number
  default     = 4
  validation {
    condition     = var.score_task_count >= 1 && var.score_task_count <= 100
    error_message = "score_task_count must be 1 to 100."
  }
}

variable "score_task_timeout" {
  description = "Per-task timeout of a batch scoring execution, in the module's score_command output (the job's own is the retrain's)."
  type        = string
  default     = "3600s"
  validation {
    condition     = can(regex("^[0-9]+s$", var.score_task_timeout))
    error_message = "score_task_timeout must be seconds, like 3600s."
  }
}

variable "log_hash_key_secret" {
  description = "The Secret Manager secret holding LOG_HASH_KEY (empty: none)."
  type        = string
  default     = ""
}
