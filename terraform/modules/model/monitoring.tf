# The model's alerts and dashboard. Filters name this model's service and job resources directly (not
# through locals) so that the dependency graph, and checkov's CKV2_TABULAR_4, can see what each policy
# watches; the job's custom metrics (custom.googleapis.com/tabular/, retrain_job/metrics.py) are also
# filtered on their `model` label.
locals {
  # Each alert's runbook travels with it (also in terraform/README.md, "What each alert means").
  runbook = "See terraform/README.md, 'What each alert means and what to do'."
}

resource "google_monitoring_alert_policy" "error_rate" {
  display_name          = "${var.model} ${var.environment}: 5xx rate above ${var.alert_5xx_ratio * 100}%"
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = local.labels
  documentation {
    content   = "The ${var.model} service answered more than ${var.alert_5xx_ratio * 100}% of requests with 5xx for 5 minutes. Bad input never causes a 5xx, so this is a bug or no model at all (503). Check /health of the serving revision; if a new revision started it, roll back traffic. ${local.runbook}"
    mime_type = "text/markdown"
  }
  conditions {
    display_name = "5xx share over 5 minutes"
    condition_prometheus_query_language {
      query               = "sum(rate({\"__name__\"=\"run.googleapis.com/request_count\",\"monitored_resource\"=\"cloud_run_revision\",\"service_name\"=\"${google_cloud_run_v2_service.function.name}\",\"response_code_class\"=\"5xx\"}[5m])) / sum(rate({\"__name__\"=\"run.googleapis.com/request_count\",\"monitored_resource\"=\"cloud_run_revision\",\"service_name\"=\"${google_cloud_run_v2_service.function.name}\"}[5m])) > ${var.alert_5xx_ratio}"
      duration            = "60s"
      evaluation_interval = "60s"
    }
  }
}

resource "google_monitoring_alert_policy" "latency" {
  display_name          = "${var.model} ${var.environment}: p95 latency above ${var.alert_p95_latency_ms} ms"
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = local.labels
  documentation {
    content   = "p95 request latency of the ${var.model} service stayed above ${var.alert_p95_latency_ms} ms for 5 minutes. Look at instance count (max instances reached?), CPU throttling and batch sizes in the logs. ${local.runbook}"
    mime_type = "text/markdown"
  }
  conditions {
    display_name = "p95 request latency"
    condition_threshold {
      filter          = "metric.type=\"run.googleapis.com/request_latencies\" AND resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${google_cloud_run_v2_service.function.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_p95_latency_ms
      duration        = "300s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_PERCENTILE_95"
        cross_series_reducer = "REDUCE_MAX"
      }
    }
  }
}

resource "google_monitoring_alert_policy" "fallback" {
  display_name          = "${var.model} ${var.environment}: fallback model serving"
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = local.labels
  documentation {
    content   = "${var.model} predictions are answered by a fallback model: the stable bundle is missing, corrupt or unservable, or the bucket is unreachable. GET /health names the version and the storage error. Fix or roll back the pointer (python -m retrain_job rollback --model ${var.model}). ${local.runbook}"
    mime_type = "text/markdown"
  }
  conditions {
    display_name = "fallback predictions in 5 minutes"
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${var.log_metric_names.fallback_served}\" AND resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${google_cloud_run_v2_service.function.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }
}

resource "google_monitoring_alert_policy" "drift" {
  display_name          = "${var.model} ${var.environment}: data drift above ${var.alert_drift_share}"
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = local.labels
  documentation {
    content   = "The last ${var.model} retraining run found more than ${var.alert_drift_share * 100}% of features drifting between serving inputs and training data. Open the run's drift report (reports/${var.model}/drift/latest/report.html in the bucket); collect labels for the drifted inputs before retraining on them. ${local.runbook}"
    mime_type = "text/markdown"
  }
  conditions {
    display_name = "drift_share"
    condition_threshold {
      filter          = "metric.type=\"custom.googleapis.com/tabular/drift_share\" AND resource.type=\"generic_task\" AND resource.labels.job=\"${google_cloud_run_v2_job.retrain.name}\" AND metric.labels.model=\"${var.model}\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_drift_share
      duration        = "0s"
      aggregations {
        alignment_period   = "3600s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }
}

resource "google_monitoring_alert_policy" "retrain_failed" {
  display_name          = "${var.model} ${var.environment}: retraining job failed"
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = local.labels
  documentation {
    content   = "A ${var.model} execution of the job failed: a retraining run, or an hourly monitor run (its args start with monitor). Its last log line is a JSON summary with the error; a rejected candidate is not a failure. Rerun a retraining with gcloud run jobs execute ${var.job_name}; a monitor run is retried by the next hour's. ${local.runbook}"
    mime_type = "text/markdown"
  }
  conditions {
    display_name = "failed executions"
    condition_threshold {
      filter          = "metric.type=\"run.googleapis.com/job/completed_execution_count\" AND resource.type=\"cloud_run_job\" AND resource.labels.job_name=\"${google_cloud_run_v2_job.retrain.name}\" AND metric.labels.result=\"failed\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period   = "3600s"
        per_series_aligner = "ALIGN_SUM"
      }
    }
  }
}

# condition_absent caps its window at 23.5 hours; a PromQL absence over N days has no such cap.
resource "google_monitoring_alert_policy" "no_recent_retrain" {
  display_name          = "${var.model} ${var.environment}: no successful retrain for ${var.no_retrain_days} days"
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = local.labels
  documentation {
    content   = "No ${var.model} retraining run reported success for ${var.no_retrain_days} days: the scheduler is paused or failing, or every run fails. Check the Cloud Scheduler job ${var.job_name}-schedule and the job's executions. ${local.runbook}"
    mime_type = "text/markdown"
  }
  conditions {
    display_name = "job_success absent or never 1"
    condition_prometheus_query_language {
      query               = "absent_over_time({\"__name__\"=\"custom.googleapis.com/tabular/job_success\",\"monitored_resource\"=\"generic_task\",\"job\"=\"${google_cloud_run_v2_job.retrain.name}\",\"model\"=\"${var.model}\"}[${var.no_retrain_days}d]) or max_over_time({\"__name__\"=\"custom.googleapis.com/tabular/job_success\",\"monitored_resource\"=\"generic_task\",\"job\"=\"${google_cloud_run_v2_job.retrain.name}\",\"model\"=\"${var.model}\"}[${var.no_retrain_days}d]) < 1"
      duration            = "0s"
      evaluation_interval = "3600s"
    }
  }
}

# Realised quality of each served version (model_version, role) from the truth fed back through POST /feedback: the
# hourly monitor writes live_accuracy (classifiers) or live_coverage (regressors) only when at least
# MONITOR_MIN_LABELS labelled predictions back the value, so the label count needs no condition of its own. Exactly
# one of the two policies exists, the one whose floor var.models sets for this model (its spec's [gate]). Every
# series is judged alone (no reducer), so the incident names the version and the role. A missing point means too few
# labels, not recovery: the condition keeps its state until a point above the floor arrives.
resource "google_monitoring_alert_policy" "live_accuracy" {
  count                 = var.live_accuracy_floor == null ? 0 : 1
  display_name          = "${var.model} ${var.environment}: live accuracy below ${var.live_accuracy_floor}"
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = local.labels
  documentation {
    content   = "Realised accuracy of ${var.model} version $${metric.label.model_version} (role $${metric.label.role}) fell below ${var.live_accuracy_floor}, its spec's gate floor (accuracy_floor), on at least MONITOR_MIN_LABELS predictions whose truth came back through POST /feedback. Read the monitor's report, reports/${var.model}/monitor/latest.html in the bucket, and first its feedback guards: a source whose truths contradict confident predictions is a labeller to fix, not a model. A canary: the monitor itself rolls it back once it is worse than stable by more than the gate's tolerance; to drop it now, python -m retrain_job rollback-canary --model ${var.model}. The stable version: python -m retrain_job rollback --model ${var.model} if the previous version did better live, otherwise retrain (the fed-back labels are training data: gcloud run jobs execute ${var.job_name}) and read its drift report. ${local.runbook}"
    mime_type = "text/markdown"
  }
  conditions {
    display_name = "live_accuracy below the floor"
    condition_threshold {
      filter                  = "metric.type=\"custom.googleapis.com/tabular/live_accuracy\" AND resource.type=\"generic_task\" AND resource.labels.job=\"${google_cloud_run_v2_job.retrain.name}\" AND metric.labels.model=\"${var.model}\""
      comparison              = "COMPARISON_LT"
      threshold_value         = var.live_accuracy_floor
      duration                = "0s"
      evaluation_missing_data = "EVALUATION_MISSING_DATA_NO_OP"
      aggregations {
        alignment_period   = "3600s"
        per_series_aligner = "ALIGN_MIN"
      }
    }
  }
}

resource "google_monitoring_alert_policy" "live_coverage" {
  count                 = var.live_coverage_floor == null ? 0 : 1
  display_name          = "${var.model} ${var.environment}: live interval coverage below ${var.live_coverage_floor}"
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = local.labels
  documentation {
    content   = "Realised prediction-interval coverage of ${var.model} version $${metric.label.model_version} (role $${metric.label.role}) fell below ${var.live_coverage_floor}, its spec's gate floor (coverage_min): fewer fed-back truths than promised land inside the served intervals, on at least MONITOR_MIN_LABELS predictions whose truth came back through POST /feedback. Read the monitor's report, reports/${var.model}/monitor/latest.html in the bucket, and first its feedback guards: a source with many truths outside the interval may send wrong values or units, not a model's fault. A canary: the monitor itself rolls it back once it is worse than stable by more than the gate's tolerance; to drop it now, python -m retrain_job rollback-canary --model ${var.model}. The stable version: python -m retrain_job rollback --model ${var.model} if the previous version did better live, otherwise retrain (the fed-back labels are training data: gcloud run jobs execute ${var.job_name}) and read its drift report. ${local.runbook}"
    mime_type = "text/markdown"
  }
  conditions {
    display_name = "live_coverage below the floor"
    condition_threshold {
      filter                  = "metric.type=\"custom.googleapis.com/tabular/live_coverage\" AND resource.type=\"generic_task\" AND resource.labels.job=\"${google_cloud_run_v2_job.retrain.name}\" AND metric.labels.model=\"${var.model}\""
      comparison              = "COMPARISON_LT"
      threshold_value         = var.live_coverage_floor
      duration                = "0s"
      evaluation_missing_data = "EVALUATION_MISSING_DATA_NO_OP"
      aggregations {
        alignment_period   = "3600s"
        per_series_aligner = "ALIGN_MIN"
      }
    }
  }
}

resource "google_monitoring_dashboard" "model" {
  dashboard_json = templatefile("${path.module}/dashboards/model.json", {
    classifier               = var.live_accuracy_floor != null # the quality charts follow the model's task
    environment              = var.environment
    model                    = var.model
    service_name             = google_cloud_run_v2_service.function.name
    job_name                 = google_cloud_run_v2_job.retrain.name
    predictions_metric       = var.log_metric_names.predictions
    fallback_served_metric   = var.log_metric_names.fallback_served
    validation_errors_metric = var.log_metric_names.validation_errors
  })
}
