# One model's Cloud Run service, built from the shared source bundle and told which model it serves
# (MODELS, DEFAULT_MODEL), so that each model scales, is canaried and is rolled back on its own.
locals {
  labels = merge(var.labels, { model = var.model })
}

# Deployed as a Cloud Run function (built from source by Cloud Build) so that traffic can be split
# between revisions; google_cloudfunctions2_function has no traffic blocks.
resource "google_cloud_run_v2_service" "function" {
  name                = var.service_name
  location            = var.region
  ingress             = "INGRESS_TRAFFIC_ALL"
  deletion_protection = true
  labels              = local.labels

  build_config {
    source_location = var.source_location
    function_target = "predict"
    base_image      = var.function_base_image
  }

  template {
    revision                         = "${var.service_name}-${var.revision_suffix}"
    service_account                  = var.function_service_account
    max_instance_request_concurrency = var.function_concurrency
    timeout                          = "${var.function_timeout_s}s"
    labels                           = local.labels

    scaling {
      min_instance_count = var.function_min_instances
      max_instance_count = var.function_max_instances
    }

    containers {
      # Cloud Build replaces the image with the one it builds from build_config.
      image = "us-docker.pkg.dev/cloudrun/container/hello"

      resources {
        limits = {
          cpu    = var.function_cpu
          memory = var.function_memory
        }
        cpu_idle          = !var.cpu_always_allocated # terraform/modules/model/shadow.tf
        startup_cpu_boost = true
      }

      env {
        name  = "MODEL_STORE"
        value = var.model_store
      }
      env {
        name  = "MODELS"
        value = var.model
      }
      env {
        name  = "DEFAULT_MODEL"
        value = var.model
      }
      env {
        name  = "POINTER_TTL_S"
        value = tostring(var.pointer_ttl_s)
      }
      env {
        name  = "WORKERS"
        value = tostring(var.function_workers)
      }
      env {
        name  = "THREADS"
        value = tostring(var.function_threads)
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

      startup_probe {
        http_get {
          path = "/health"
        }
        initial_delay_seconds = 0
        period_seconds        = 2
        failure_threshold     = 15
      }
    }
  }

  # Stable traffic: the named revision, or the latest one when none is named.
  traffic {
    type     = var.stable_revision == "" ? "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST" : "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"
    revision = var.stable_revision == "" ? null : var.stable_revision
    percent  = 100 - var.candidate_percent
  }

  # The candidate: reachable at its tag URL, with candidate_percent of live traffic (100 = blue-green flip).
  dynamic "traffic" {
    for_each = var.candidate_revision == "" ? [] : [var.candidate_revision]
    content {
      type     = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"
      revision = traffic.value
      percent  = var.candidate_percent
      tag      = var.candidate_tag
    }
  }
}
