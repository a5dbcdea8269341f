terraform {
  # 1.9+ for validations that refer to other variables (candidate traffic needs a candidate revision).
  required_version = ">= 1.9, < 2.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.30"
    }
  }

  # State lives in a GCS bucket created once by hand (see README, "Deploy: bootstrap");
  # `terraform init -backend-config=environments/<env>.backend.hcl` fills in bucket and prefix.
  backend "gcs" {}
}

provider "google" {
  project = var.project_id
  region  = var.region
}
