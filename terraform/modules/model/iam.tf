# The per-model grants: the (shared) scheduler account may run this job and nothing else; who may call
# this model's service. The shared accounts' bucket and project grants are in the root module.

# Cloud Run Jobs Executor With Overrides (run.jobs.run, run.jobs.runWithOverrides, run.executions.cancel), on this
# job only: the narrowest predefined role that lets the monitor schedule's :run request carry overrides (its args),
# which roles/run.invoker does not allow; roles/run.developer would also let the account change or delete the job.
# It covers the plain retrain run too, so it replaces run.invoker rather than adding to it.
resource "google_cloud_run_v2_job_iam_member" "scheduler_runs_job" {
  name     = google_cloud_run_v2_job.retrain.name
  location = var.region
  role     = "roles/run.jobsExecutorWithOverrides"
  member   = "serviceAccount:${var.scheduler_service_account}"
}

# Who may call the service: private by default; public only when allow_public_invoker says so. Cloud Run checks
# the invoker role per service, before any route, so this guards every route alike: predictions, POST /feedback
# (truth that feeds the live-quality alert and retraining), the v2 protocol and /health.
resource "google_cloud_run_v2_service_iam_member" "invokers" {
  for_each = toset(concat(var.invoker_members, var.allow_public_invoker ? ["allUsers"] : []))
  name     = google_cloud_run_v2_service.function.name
  location = var.region
  role     = "roles/run.invoker"
  member   = each.value
}
