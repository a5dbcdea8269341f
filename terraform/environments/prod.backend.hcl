bucket = "penguins-prod-000000-tfstate"
prefix = "penguins/prod"
