# The per-model grants: the (shared) scheduler account may run this job and nothing else; who may call
# this model's service. The shared accounts' bucket and project grants are in the root module.

resource "google_cloud_run_v2_job_iam_member" "scheduler_runs_job" {
  name     = google_cloud_run_v2_job.retrain.name
  location = var.region
  role     = "roles/run.invoker"
  member   = "serviceAccount:${var.scheduler_service_account}"
}

# Who may call the service: private by default; public only when allow_public_invoker says so.
resource "google_cloud_run_v2_service_iam_member" "invokers" {
  for_each = toset(concat(var.invoker_members, var.allow_public_invoker ? ["allUsers"] : []))
  name     = google_cloud_run_v2_service.function.name
  location = var.region
  role     = "roles/run.invoker"
  member   = each.value
}
