bucket = "tabular-dev-000000-tfstate"
prefix = "tabular/dev"
