# The model's retraining job and the two schedules that start it: the weekly retrain (the job as defined,
# `python -m retrain_job run --model MODEL`) and the hourly monitor (the same job and image, its args overridden).
#
# Batch scoring runs on the same job too, one execution per file set, its args and task count overridden (the
# module's `score_command` output, and retrain_job/README.md "Batch scoring"): `python -m retrain_job score --model
# MODEL --input gs://... --output gs://...` on `score_task_count` tasks, each scoring its share of the input
# (CLOUD_RUN_TASK_INDEX of CLOUD_RUN_TASK_COUNT) with the model as the function serves it. A task's output is
# committed whole and a retried task replaces its own shard (max_retries), so the 2 CPUs and 2 GiB below suit it
# as they suit the retrain: its memory stays flat however large the input.
resource "google_cloud_run_v2_job" "retrain" {
  name                = var.job_name
  location            = var.region
  deletion_protection = true
  labels              = local.labels

  template {
    task_count  = var.job_task_count
    parallelism = var.job_task_count

    template {
      service_account = var.job_service_account
      max_retries     = 1
      timeout         = "1800s"

      # The command and the mode apart, so that a run's overrides replace only the mode's args (the monitor).
      containers {
        image   = var.job_image
        command = ["python", "-m", "retrain_job"]
        args    = ["run", "--model", var.model]

        resources {
          limits = {
            cpu    = "2"
            memory = "2Gi"
          }
        }

        env {
          name  = "MODEL_STORE"
          value = var.model_store
        }
        env {
          name  = "LOG_PREFIX"
          value = ""
        }
        env {
          name  = "CANARY_PERCENT"
          value = tostring(var.job_canary_percent)
        }
        env {
          name  = "METRICS_PROJECT"
          value = var.project_id
        }
        env {
          name  = "CLOUD_RUN_REGION"
          value = var.region
        }
        # the routed log lines are read from BigQuery (the bucket's copy is the archive)
        env {
          name  = "LOG_ENGINE"
          value = "bigquery"
        }
        env {
          name  = "LOG_TABLE"
          value = var.log_table
        }
        # the key of fields logged hashed (log = "hash"), from Secret Manager: never in the state or the repository
        dynamic "env" {
          for_each = var.log_hash_key_secret == "" ? [] : [var.log_hash_key_secret]
          content {
            name = "LOG_HASH_KEY"
            value_source {
              secret_key_ref {
                secret  = env.value
                version = "latest"
              }
            }
          }
        }
      }
    }
  }
}

resource "google_cloud_scheduler_job" "retrain" {
  name        = "${var.job_name}-schedule"
  region      = var.region
  schedule    = var.retrain_schedule
  time_zone   = var.retrain_time_zone
  description = "Starts the ${var.model} retraining job"

  retry_config {
    retry_count = 1
  }

  http_target {
    http_method = "POST"
    uri         = "https://run.googleapis.com/v2/projects/${var.project_id}/locations/${var.region}/jobs/${google_cloud_run_v2_job.retrain.name}:run"

    oauth_token {
      service_account_email = var.scheduler_service_account
      scope                 = "https://www.googleapis.com/auth/cloud-platform"
    }
  }
}

# Hourly: the same Cloud Run Job in its monitor mode, `python -m retrain_job monitor --model MODEL`, which joins the
# served predictions with the truth fed back (the BigQuery log table) and writes the live_* metrics. The :run request's
# overrides (for this execution only) replace the container's args, the command stays, and run a single task: the
# job's task_count splits the retraining search, and more tasks would only repeat the monitor. Cloud Scheduler takes
# the body base64-encoded; Google APIs want it typed as JSON (the default type is application/octet-stream).
resource "google_cloud_scheduler_job" "monitor" {
  name        = "${var.job_name}-monitor"
  region      = var.region
  schedule    = var.monitor_schedule
  time_zone   = var.retrain_time_zone
  description = "Starts the ${var.model} job in monitor mode: live quality from fed-back truth"

  retry_config {
    retry_count = 1
  }

  http_target {
    http_method = "POST"
    uri         = "https://run.googleapis.com/v2/projects/${var.project_id}/locations/${var.region}/jobs/${google_cloud_run_v2_job.retrain.name}:run"
    headers = {
      "Content-Type" = "application/json"
    }
    body = base64encode(jsonencode({
      overrides = {
        containerOverrides = [{ args = ["monitor", "--model", var.model] }]
        taskCount          = 1
      }
    }))

    oauth_token {
      service_account_email = var.scheduler_service_account
      scope                 = "https://www.googleapis.com/auth/cloud-platform"
    }
  }
}
