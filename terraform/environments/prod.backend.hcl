bucket = "tabular-prod-000000-tfstate"
prefix = "tabular/prod"
