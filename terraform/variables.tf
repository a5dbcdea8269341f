variable "project_id" {
  description = "Google Cloud project that hosts the models' services and jobs."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a valid Google Cloud project id."
  }
}

variable "region" {
  description = "Region of the services, the jobs, the schedulers and the bucket."
  type        = string
  default     = "europe-west1"
}

variable "environment" {
  description = "Environment name, used in resource names and labels."
  type        = string
  validation {
    condition     = contains(["dev", "prod"], var.environment)
    error_message = "environment must be dev or prod."
  }
}

variable "name_prefix" {
  description = "Prefix of the shared resources' names (service accounts, log sink, log-based metrics) and the `app` label."
  type        = string
  default     = "tabular"
  validation {
    # the longest service account id is NAME_PREFIX-sched-prod: at most 30 characters
    condition     = can(regex("^[a-z][a-z0-9-]{0,17}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 2-19 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "models" {
  description = <<-EOT
    The models to serve, one per folder of specs/, each with its own Cloud Run service (fn-MODEL-ENV), retraining
    job (retrain-MODEL-ENV), retrain and monitor schedules, alerts and dashboard. Values override the project-wide
    defaults for that model only: min_instances, max_instances, memory, retrain_schedule, monitor_schedule,
    job_task_count, job_canary_percent, alert_5xx_ratio, alert_p95_latency_ms, alert_drift_share, no_retrain_days
    (unset: the variable of the same name, function_ prefixed for the first three). Each model also sets exactly one
    live-quality floor, from its spec's [gate]: live_accuracy_floor (a classifier: accuracy_floor) or
    live_coverage_floor (a regressor: coverage_min); its alert fires when the monitor's live metric falls below it.
  EOT
  type = map(object({
    min_instances        = optional(number)
    max_instances        = optional(number)
    memory               = optional(string)
    retrain_schedule     = optional(string)
    monitor_schedule     = optional(string)
    job_task_count       = optional(number)
    job_canary_percent   = optional(number)
    alert_5xx_ratio      = optional(number)
    alert_p95_latency_ms = optional(number)
    alert_drift_share    = optional(number)
    no_retrain_days      = optional(number)
    live_accuracy_floor  = optional(number)
    live_coverage_floor  = optional(number)
  }))
  default = {
    penguins = { live_accuracy_floor = 0.9 }
    co2      = { live_coverage_floor = 0.87 }
  }
  validation {
    condition     = length(var.models) > 0
    error_message = "models must name at least one model."
  }
  validation {
    condition     = alltrue([for m in values(var.models) : (m.live_accuracy_floor == null) != (m.live_coverage_floor == null)])
    error_message = "Each model sets exactly one of live_accuracy_floor (a classifier: its spec's [gate] accuracy_floor) and live_coverage_floor (a regressor: coverage_min)."
  }
  validation {
    condition     = alltrue([for m in values(var.models) : alltrue([for f in [m.live_accuracy_floor, m.live_coverage_floor] : f == null ? true : f > 0 && f <= 1])])
    error_message = "live_accuracy_floor and live_coverage_floor must be in (0, 1]."
  }
  validation {
    # fn-MODEL-prod must leave room for a revision suffix in a 63-character revision name
    condition     = alltrue([for m in keys(var.models) : can(regex("^[a-z][a-z0-9-]{0,30}[a-z0-9]$", m))])
    error_message = "Each model name must be 2-32 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "traffic" {
  description = <<-EOT
    Per model (a key of models): the revisions serving it. stable_revision (empty: the latest revision),
    candidate_revision (empty: none) reachable at the candidate_tag URL, candidate_percent of live traffic for it
    (0 tag only, a canary share, or 100 for the blue-green flip). A model not listed sends all its traffic to its
    latest revision.
  EOT
  type = map(object({
    stable_revision    = optional(string, "")
    candidate_revision = optional(string, "")
    candidate_percent  = optional(number, 0)
  }))
  default = {}
  validation {
    condition     = alltrue([for m in keys(var.traffic) : contains(keys(var.models), m)])
    error_message = "traffic may only name models listed in models."
  }
  validation {
    condition     = alltrue([for t in values(var.traffic) : t.candidate_percent >= 0 && t.candidate_percent <= 100])
    error_message = "candidate_percent must be 0 to 100."
  }
  validation {
    condition     = alltrue([for t in values(var.traffic) : t.candidate_percent == 0 || t.candidate_revision != ""])
    error_message = "candidate_percent needs a candidate_revision."
  }
}

variable "model_bucket_name" {
  description = "Globally unique name of the bucket holding every model's bundles, drift reports and prediction logs (shared)."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9._-]{2,62}$", var.model_bucket_name))
    error_message = "model_bucket_name must be a valid bucket name."
  }
}

variable "access_log_bucket_name" {
  description = "Existing bucket that receives the model bucket's usage logs."
  type        = string
}

variable "function_source_object" {
  description = "Object in the model bucket holding the function's source zip (uploaded by Cloud Build)."
  type        = string
  default     = "build/function-source.zip"
}

variable "function_base_image" {
  description = "Cloud Run functions base image the source is built on."
  type        = string
  default     = "python311"
}

variable "revision_suffix" {
  description = "Suffix of the revision this apply creates (Cloud Build passes the short commit SHA)."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9-]{1,20}$", var.revision_suffix))
    error_message = "revision_suffix must be 1-20 lowercase letters, digits or dashes."
  }
}

variable "function_memory" {
  description = "Memory per instance (per model: models[*].memory): one worker peaks near 70 MiB on single rows, ~145 MiB after 10,000-row batches load XGBoost (bench/RESULTS.md)."
  type        = string
  default     = "512Mi"
  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi)$", var.function_memory))
    error_message = "function_memory must look like 512Mi or 1Gi."
  }
}

variable "function_cpu" {
  description = "vCPUs per instance."
  type        = string
  default     = "1"
  validation {
    condition     = contains(["1", "2", "4"], var.function_cpu)
    error_message = "function_cpu must be 1, 2 or 4."
  }
}

variable "function_concurrency" {
  description = "Requests routed to one instance at once; above WORKERS x THREADS they queue briefly in gunicorn (~0.5 ms each)."
  type        = number
  default     = 4
  validation {
    condition     = var.function_concurrency >= 1 && var.function_concurrency <= 1000
    error_message = "function_concurrency must be 1 to 1000."
  }
}

variable "function_workers" {
  description = "Functions Framework gunicorn worker processes per instance (WORKERS): one per vCPU."
  type        = number
  default     = 1
  validation {
    condition     = var.function_workers >= 1 && var.function_workers <= 8
    error_message = "function_workers must be 1 to 8."
  }
}

variable "function_threads" {
  description = "Threads per gunicorn worker (THREADS): 1 measured best, the request path is CPU-bound and threads only add GIL contention."
  type        = number
  default     = 1
  validation {
    condition     = var.function_threads >= 1 && var.function_threads <= 64
    error_message = "function_threads must be 1 to 64."
  }
}

variable "function_min_instances" {
  description = "Instances of each model's service kept warm (0 scales to zero and pays a cold start); per model: models[*].min_instances."
  type        = number
  default     = 0
  validation {
    condition     = var.function_min_instances >= 0
    error_message = "function_min_instances must not be negative."
  }
}

variable "function_max_instances" {
  description = "Upper bound on instances of each model's service (a cost guard); per model: models[*].max_instances."
  type        = number
  default     = 10
  validation {
    condition     = var.function_max_instances >= 1 && var.function_max_instances <= 1000
    error_message = "function_max_instances must be 1 to 1000."
  }
}

variable "function_timeout_s" {
  description = "Request timeout in seconds."
  type        = number
  default     = 30
  validation {
    condition     = var.function_timeout_s >= 1 && var.function_timeout_s <= 3600
    error_message = "function_timeout_s must be 1 to 3600."
  }
}

variable "pointer_ttl_s" {
  description = "How often (at most) the function re-reads a model's serving.json (POINTER_TTL_S)."
  type        = number
  default     = 30
}

variable "allow_public_invoker" {
  description = "Let anyone on the internet call every model's service (allUsers invoker). Private by default."
  type        = bool
  default     = false
}

variable "invoker_members" {
  description = "IAM members allowed to call every model's service (for example serviceAccount:client@...)."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for m in var.invoker_members : !contains(["allUsers", "allAuthenticatedUsers"], m)])
    error_message = "Use allow_public_invoker, not invoker_members, to make the function public."
  }
}

variable "candidate_tag" {
  description = "Tag giving a candidate revision its own URL (https://TAG---SERVICE-HASH.run.app), in every model's service."
  type        = string
  default     = "candidate"
}

variable "job_image" {
  description = "Container image of the retraining job (Artifact Registry), the same for every model (run with --model MODEL)."
  type        = string
}

variable "job_task_count" {
  description = "Parallel tasks of each retraining run; the hyperparameter search is split across them (per model: models[*].job_task_count)."
  type        = number
  default     = 2
  validation {
    condition     = var.job_task_count >= 1 && var.job_task_count <= 18
    error_message = "job_task_count must be 1 to 18."
  }
}

variable "job_canary_percent" {
  description = "Publish retrained models as a model canary with this share (0: straight to stable; per model: models[*].job_canary_percent)."
  type        = number
  default     = 0
  validation {
    condition     = var.job_canary_percent >= 0 && var.job_canary_percent < 100
    error_message = "job_canary_percent must be at least 0 and below 100."
  }
}

variable "retrain_schedule" {
  description = "Cron schedule of each model's retraining job (per model: models[*].retrain_schedule)."
  type        = string
  default     = "0 3 * * 1"
}

variable "retrain_time_zone" {
  description = "Time zone of the cron schedules (retrain and monitor)."
  type        = string
  default     = "Etc/UTC"
}

variable "monitor_schedule" {
  description = "Cron schedule of each model's monitor run, the retraining job with args monitor --model MODEL (per model: models[*].monitor_schedule)."
  type        = string
  default     = "17 * * * *"
}

variable "notification_channels" {
  description = "Monitoring notification channel ids (projects/P/notificationChannels/N) that every model's alerts go to."
  type        = list(string)
  default     = []
}

variable "alert_5xx_ratio" {
  description = "Alert when the share of a service's 5xx responses over 5 minutes exceeds this (per model: models[*].alert_5xx_ratio)."
  type        = number
  default     = 0.01
}

variable "alert_p95_latency_ms" {
  description = "Alert when a service's p95 request latency over 5 minutes exceeds this many milliseconds (per model: models[*].alert_p95_latency_ms)."
  type        = number
  default     = 250
}

variable "alert_drift_share" {
  description = "Alert when a retraining job reports a share of drifted features above this (per model: models[*].alert_drift_share)."
  type        = number
  default     = 0.3
  validation {
    condition     = var.alert_drift_share > 0 && var.alert_drift_share <= 1
    error_message = "alert_drift_share must be in (0, 1]."
  }
}

variable "no_retrain_days" {
  description = "Alert when no retraining run of a model has succeeded for this many days (per model: models[*].no_retrain_days)."
  type        = number
  default     = 8
}

variable "report_retention_days" {
  description = "Days stamped drift and monitor reports are kept (each model's latest stays)."
  type        = number
  default     = 90
}

variable "log_retention_days" {
  description = "Days the routed prediction and feedback log lines are kept: the sink's files in the bucket (lifecycle rule) and the daily partitions of the BigQuery log table (partition expiration)."
  type        = number
  default     = 30
  validation {
    condition     = var.log_retention_days >= 1 && var.log_retention_days <= 3650 && floor(var.log_retention_days) == var.log_retention_days
    error_message = "log_retention_days must be a whole number of days from 1 to 3650."
  }
}

variable "log_hash_key_secret" {
  description = "The Secret Manager secret (its id, in this project) holding the key that fields with log = \"hash\" are logged with (LOG_HASH_KEY of the functions and jobs). Create it and its first version outside Terraform, so the key is never in the state: terraform/README.md, \"Personal data in the logs\". Empty: no key (a spec that hashes a field then stops the function at start-up)."
  type        = string
  default     = ""
  validation {
    condition     = var.log_hash_key_secret == "" || can(regex("^[A-Za-z0-9_-]{1,255}$", var.log_hash_key_secret))
    error_message = "log_hash_key_secret must be a secret id: letters, digits, '_' or '-'."
  }
}

variable "noncurrent_retention_days" {
  description = "Days overwritten or deleted object versions (old pointers, retired bundles) are kept."
  type        = number
  default     = 30
}
