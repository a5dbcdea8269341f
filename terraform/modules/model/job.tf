# The model's retraining job and the schedule that starts it.
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
