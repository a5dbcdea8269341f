bucket = "penguins-dev-000000-tfstate"
prefix = "penguins/dev"
