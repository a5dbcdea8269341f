# A shadow version (python -m retrain_job --shadow, or --shadow-if-close; the pointer's `shadow`) is scored by a
# background thread in each worker after the answer has been given (function/serving/shadow.py), and the request
# log is written by another. Cloud Run throttles an instance's CPU to almost nothing outside requests unless CPU is
# always allocated (cpu_idle = false): those threads would then run only while a later request is in flight, and
# take their time from it. Always allocated, they run between requests; the instance is billed while it lives
# (instance-based billing) rather than per request. The pointer can name a shadow at any time without a deploy, so
# this is on by default; a model that will never be shadowed may turn it off.
variable "cpu_always_allocated" {
  description = "Keep the function's CPU allocated outside requests (Cloud Run cpu_idle = false), so the shadow scorer and the log writer run between requests instead of inside the next one; false: request-based billing."
  type        = bool
  default     = true
}
