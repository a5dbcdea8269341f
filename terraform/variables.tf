variable "project_id" {
  description = "Google Cloud project that hosts the service."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a valid Google Cloud project id."
  }
}

variable "region" {
  description = "Region of the function, the job, the scheduler and the bucket."
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

variable "model_bucket_name" {
  description = "Globally unique name of the bucket holding model bundles, drift reports and prediction logs."
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
  description = "Memory per instance: one worker peaks near 70 MiB on single rows, ~145 MiB after 10,000-row batches load XGBoost (bench/RESULTS.md)."
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
  description = "Instances kept warm (0 scales to zero and pays a cold start)."
  type        = number
  default     = 0
  validation {
    condition     = var.function_min_instances >= 0
    error_message = "function_min_instances must not be negative."
  }
}

variable "function_max_instances" {
  description = "Upper bound on instances (a cost guard)."
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
  description = "How often (at most) the function re-reads serving.json (POINTER_TTL_S)."
  type        = number
  default     = 30
}

variable "allow_public_invoker" {
  description = "Let anyone on the internet call the function (allUsers invoker). Private by default."
  type        = bool
  default     = false
}

variable "invoker_members" {
  description = "IAM members allowed to call the function (for example serviceAccount:client@...)."
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
  description = "Container image of the retraining job (Artifact Registry)."
  type        = string
}

variable "job_task_count" {
  description = "Parallel tasks of each retraining run; the hyperparameter search is split across them."
  type        = number
  default     = 2
  validation {
    condition     = var.job_task_count >= 1 && var.job_task_count <= 18
    error_message = "job_task_count must be 1 to 18 (the search grid has 18 points)."
  }
}

variable "job_canary_percent" {
  description = "Publish retrained models as a model canary with this share (0: straight to stable)."
  type        = number
  default     = 0
  validation {
    condition     = var.job_canary_percent >= 0 && var.job_canary_percent < 100
    error_message = "job_canary_percent must be at least 0 and below 100."
  }
}

variable "retrain_schedule" {
  description = "Cron schedule of the retraining job."
  type        = string
  default     = "0 3 * * 1"
}

variable "retrain_time_zone" {
  description = "Time zone of the cron schedule."
  type        = string
  default     = "Etc/UTC"
}

variable "notification_channels" {
  description = "Monitoring notification channel ids (projects/P/notificationChannels/N) that alerts go to."
  type        = list(string)
  default     = []
}

variable "alert_5xx_ratio" {
  description = "Alert when the share of 5xx responses over 5 minutes exceeds this."
  type        = number
  default     = 0.01
}

variable "alert_p95_latency_ms" {
  description = "Alert when p95 request latency over 5 minutes exceeds this many milliseconds."
  type        = number
  default     = 250
}

variable "alert_drift_share" {
  description = "Alert when the retraining job reports a share of drifted features above this."
  type        = number
  default     = 0.3
  validation {
    condition     = var.alert_drift_share > 0 && var.alert_drift_share <= 1
    error_message = "alert_drift_share must be in (0, 1]."
  }
}

variable "no_retrain_days" {
  description = "Alert when no retraining run has succeeded for this many days."
  type        = number
  default     = 8
}

variable "report_retention_days" {
  description = "Days drift reports are kept."
  type        = number
  default     = 90
}

variable "log_retention_days" {
  description = "Days prediction log files (the sink's output) are kept."
  type        = number
  default     = 30
}

variable "noncurrent_retention_days" {
  description = "Days overwritten or deleted object versions (old pointers, retired bundles) are kept."
  type        = number
  default     = 30
}
