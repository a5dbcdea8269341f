"""The job's one data layer: labelled data (base set, CSVs, feedback) and the serving logs, read through an engine."""
